"""Job submission over HTTP: `POST /api/v1/jobs` latency (p50/p99, one client) and submissions per second
(several clients), against a real gunicorn on a free loopback port, a scratch database with the ledger
on, and Redis as the broker. Nothing consumes the jobs (a private queue that is deleted afterwards): this
measures the API and its transaction — validation, key check, rate limit, job row, ledger event, payload,
dispatch — not the pipeline (bench/pipeline_bench.py does that).

    python bench/api_bench.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import (
    BASE_DIR,
    checkout_database,
    drop_database,
    free_port,
    percentile,
    scratch_database,
    server_urls,
    wait_until,
)

DATABASE = checkout_database("arbiter_bench_api")
BODY = {
    "task_type": "classification",
    "messages": [
        {"role": "system", "content": "Route the ticket to a queue."},
        {"role": "user", "content": "My card was charged twice for the same order, please help."},
    ],
    "labels": {"region": "eu", "pii": False},
    "constraints": {"latency_budget_ms": 3000, "max_tier": "mini"},
    "metadata": {"ticket": "T-1042"},
}


def _setup_django(database_url: str, redis_url: str, queue: str) -> None:
    os.environ.update(DATABASE_URL=database_url, REDIS_URL=redis_url, ARBITER_QUEUE=queue)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()


def _seed() -> str:
    from django.contrib.auth import get_user_model

    from audit.ledger import Actor
    from routing.demo.seed import seed_catalog, seed_policy
    from routing.models import Application
    from routing.services.keys import api_key_create

    seed_catalog()
    seed_policy()
    application = Application.objects.get_or_create(slug="bench-api", defaults={"name": "bench-api"})[0]
    _, key = api_key_create(application=application, scopes=["jobs:write"], actor=Actor.system("bench"),
        created_by=get_user_model().objects.get_or_create(username="bench")[0])
    return key


def _start_gunicorn(port: int, env: dict[str, str], workers: int, threads: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "controlplane.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread",
            "--log-level",
            "warning",
            "--keep-alive",
            "30",
        ],
        cwd=BASE_DIR,
        env=env,
        start_new_session=True,
    )


def _healthy(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/v1/models")  # 401 without a key: the app is up (/healthz wants workers)
        ok = connection.getresponse().status == 401
        connection.close()
        return ok
    except OSError:
        return False


def _submitter(port: int, key: str, count: int, latencies: list[float], errors: list[int]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps(BODY).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for _ in range(count):
        started = time.perf_counter()
        connection.request("POST", "/api/v1/jobs", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 201:
            errors.append(response.status)
    connection.close()


def _measure(port: int, key: str, clients: int, per_client: int) -> dict:
    latencies: list[float] = []
    errors: list[int] = []
    threads = [
        threading.Thread(target=_submitter, args=(port, key, per_client, latencies, errors)) for _ in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "per_second": round(len(latencies) / elapsed, 1),
    }


def run(quick: bool = False) -> dict:
    """Bench results: {"setup": {...}, "runs": [{clients, requests, errors, p50_ms, p99_ms, per_second}]}."""
    database_url, redis_url = server_urls()
    url = scratch_database(DATABASE)
    queue = f"arbiter-bench-api-{uuid.uuid4().hex[:8]}"
    _setup_django(url, redis_url, queue)
    key = _seed()
    port = free_port()
    workers, threads = 2, 4
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "ARBITER_QUEUE": queue,
        "ARBITER_RATE_LIMIT_PER_MINUTE": "0",
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    }
    server = _start_gunicorn(port, env, workers, threads)
    try:
        if not wait_until(lambda: _healthy(port), timeout=30):
            raise RuntimeError("gunicorn did not become healthy within 30 s")
        _measure(port, key, clients=2, per_client=10)  # warm-up: connections, imports, caches
        per_client = 50 if quick else 300
        runs = [
            _measure(port, key, clients=1, per_client=per_client),
            _measure(port, key, clients=4, per_client=per_client // 2),
            _measure(port, key, clients=8, per_client=per_client // 4),
        ]
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        from django.db import connections

        connections.close_all()
        from controlplane.redis_client import get_redis

        get_redis().delete(queue)  # the undelivered dispatch messages
        drop_database(DATABASE)
    return {
        "setup": {
            "gunicorn_workers": workers,
            "threads": threads,
            "cpus": os.cpu_count(),
            "quick": quick,
            "database": database_url.rsplit("@", 1)[-1].rsplit("/", 1)[0],
        },
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(quick=args.quick)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    setup = result["setup"]
    print(
        f"POST /api/v1/jobs — gunicorn {setup['gunicorn_workers']}x{setup['threads']} gthread, "
        f"{setup['cpus']} CPUs, Postgres at {setup['database']}"
    )
    print(f"{'clients':>7} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'submits/s':>10}")
    for row in result["runs"]:
        print(
            f"{row['clients']:>7} {row['requests']:>8} {row['errors']:>6} {row['p50_ms']:>8} "
            f"{row['p99_ms']:>8} {row['per_second']:>10}"
        )


if __name__ == "__main__":
    main()
