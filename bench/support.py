"""Shared set-up for the benchmarks: a scratch database on the configured (or embedded) server,
migrated, and helpers to start real processes on loopback. Every loop here is bounded."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent


def server_urls() -> tuple[str, str]:
    """(DATABASE_URL, REDIS_URL) of the configured services, else of the embedded ones (started)."""
    sys.path.insert(0, str(BASE_DIR))
    from controlplane import embedded

    database = os.environ.get("DATABASE_URL") or embedded.ensure_postgres()
    redis = os.environ.get("REDIS_URL") or embedded.ensure_redis()
    return database, redis


def scratch_database(name: str) -> str:
    """Create (fresh) database `name` on the same server, migrated, and return its URL. It is a copy of a
    migrated template database kept on the server (`arbiter_bench_template_<digest of the migrations>`),
    made by the first bench that needs it: copying takes a second where migrating took ten or more."""
    import psycopg

    database_url, _ = server_urls()
    parts = urlsplit(database_url)
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    template = _migrated_template(admin_url, parts)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


def _migrations_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(BASE_DIR.glob("*/migrations/*.py")):
        digest.update(str(path.relative_to(BASE_DIR)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _migrated_template(admin_url: str, parts) -> str:
    """The template's name, migrating it first if the server has none for these migrations. Built under a
    name of its own and renamed when complete, so a concurrent bench never copies a half-migrated one."""
    import psycopg

    template = f"arbiter_bench_template_{_migrations_digest()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [template]).fetchone():
            return template
        building = f"{template}_{os.getpid()}"
        conn.execute(f'CREATE DATABASE "{building}"')
    env = {**os.environ, "DATABASE_URL": urlunsplit(parts._replace(path=f"/{building}"))}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True
    )
    with psycopg.connect(admin_url, autocommit=True) as conn:
        try:
            conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{template}"')
        except psycopg.errors.DuplicateDatabase:  # another bench finished one first
            conn.execute(f'DROP DATABASE "{building}"')
    return template


def drop_database(name: str) -> None:
    import psycopg

    database_url, _ = server_urls()
    admin_url = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def checkout_database(name: str) -> str:
    """`name` with a digest of this checkout's path: several checkouts share one Postgres server, and a
    scratch database is dropped WITH (FORCE) when a bench starts, so two checkouts must never share one."""
    return f"{name}_{hashlib.sha256(str(BASE_DIR).encode()).hexdigest()[:8]}"


def free_port() -> int:
    """A free loopback port: from `ARBITER_BENCH_PORTS` ("8650-8699") when set, so that people sharing a
    machine can keep to their own range; else one the kernel picks."""
    span = os.environ.get("ARBITER_BENCH_PORTS", "")
    if span:
        low, _, high = span.partition("-")
        for port in range(int(low), int(high or low) + 1):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
                if port not in _handed_out:
                    _handed_out.add(port)
                    return port
        raise RuntimeError(f"no free port left in ARBITER_BENCH_PORTS={span}")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


_handed_out: set[int] = set()  # a port handed out may not be bound yet when the next one is asked for


def start_modelserver(latency_scale: float = 0.0) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "modelserver", "--port", str(port), "--latency-scale", str(latency_scale)],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    ready = process.stdout.readline()
    if "ready" not in ready:
        raise RuntimeError(f"model server did not start: {ready!r}")
    return process, f"http://127.0.0.1:{port}/v1"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
