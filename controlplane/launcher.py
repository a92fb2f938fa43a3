"""`make run`: start the whole product on one machine, and keep it up.

Embedded PostgreSQL and Redis (unless DATABASE_URL / REDIS_URL say otherwise), migrations, the demo
seed, then the Procfile's processes — the web server, a Celery worker, Celery beat and the local
model server — all under supervisord (see controlplane.supervision), which restarts any of them,
services included, that dies. Ctrl-C stops the processes, then the embedded services, cleanly; the
next `make run` picks `.data/` up again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import xmlrpc.client
from pathlib import Path

from honcho.environ import parse_procfile

from controlplane import embedded
from controlplane.console import LogFollower
from controlplane.supervision import (
    Program,
    Supervisor,
    SupervisorError,
    become_subreaper,
    procfile_program,
    reap_orphans,
)

BASE_DIR = Path(__file__).resolve().parent.parent
HEALTH_TIMEOUT_S = 120
SERVICE_TIMEOUT_S = 60
SUPERVISOR_RECOVERIES = 3  # within five minutes
PROCESS_ORDER = {"modelserver": 100, "beat": 200, "worker": 300, "web": 400}


class LaunchError(RuntimeError):
    """A problem the operator must fix; shown as one line."""


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise LaunchError(f"{name}={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def _check_broker(url: str) -> None:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:  # kombu raises transport-specific errors
        raise LaunchError(f"the broker at CELERY_BROKER_URL is unreachable: {exc}") from None


def _check_database(url: str) -> None:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LaunchError(f"the database at DATABASE_URL is unreachable: {reason}") from None


def _check_settings() -> None:
    from django.core.exceptions import ImproperlyConfigured

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    try:
        import controlplane.settings  # noqa: F401 (imported for its validation)
    except ImproperlyConfigured as exc:
        raise LaunchError(f"configuration error: {exc}") from None


def prepare_environment() -> tuple[dict[str, str], list[str]]:
    """The environment for every child process, and which embedded services to supervise."""
    _check_settings()
    env = os.environ
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("ARBITER_DATA_DIR", str(embedded.data_dir()))
    env["PYTHONUNBUFFERED"] = "1"
    services: list[str] = []
    if not env.get("DATABASE_URL"):
        print("arbiter: preparing embedded PostgreSQL under", embedded.paths().pgdata, flush=True)
        env["DATABASE_URL"] = embedded.prepare_postgres()
        services.append("postgres")
    if not env.get("REDIS_URL"):
        env["REDIS_URL"] = embedded.prepare_redis()
        services.append("redis")
    if "postgres" not in services:
        _check_database(env["DATABASE_URL"])
    if env.get("CELERY_BROKER_URL"):
        _check_broker(env["CELERY_BROKER_URL"])
    return dict(env), services


def _programs(services: list[str], run_modelserver: bool) -> list[Program]:
    programs = []
    if "postgres" in services:
        command, user = embedded.postgres_program()
        # SIGINT is PostgreSQL's "fast" shutdown: open transactions roll back, a checkpoint is written.
        programs.append(
            Program("postgres", command, priority=10, autostart=True, stop_signal="INT", stop_wait_s=60, user=user)
        )
    if "redis" in services:
        programs.append(Program("redis", embedded.redis_program(), priority=10, autostart=True, stop_wait_s=30))
    procfile = parse_procfile((BASE_DIR / "Procfile").read_text()).processes
    for name, line in procfile.items():
        if name == "modelserver" and not run_modelserver:
            continue
        # Started in this order, stopped in the reverse: web stops taking requests first, the worker
        # finishes its tasks while the model server still answers.
        programs.append(procfile_program(name, line, priority=PROCESS_ORDER.get(name, 500)))
    return programs


def _wait_for_services(supervisor: Supervisor, services: list[str]) -> None:
    probes = {"postgres": embedded.postgres_ready, "redis": embedded.redis_running}
    deadline = time.monotonic() + SERVICE_TIMEOUT_S
    waiting = list(services)
    while waiting:
        waiting = [name for name in waiting if not probes[name]()]
        states = supervisor.states()
        for name in waiting:
            if states.get(name) == "FATAL" or time.monotonic() > deadline:
                log = Path(supervisor.log_dir) / f"{name}.log"
                raise LaunchError(f"embedded {name} did not start (see {log})")
        time.sleep(0.2)


def _manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), *args], env=env, cwd=BASE_DIR, check=False)
    if result.returncode != 0:
        raise LaunchError(f"manage.py {' '.join(args)} failed (exit {result.returncode}); see the output above")


def _wait_healthy(url: str, on_ready) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (our own loopback URL)
                if response.status == 200:
                    on_ready()
                    return
        except urllib.error.HTTPError as exc:
            last = exc.read().decode(errors="replace")
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    print(f"arbiter: /healthz not healthy after {HEALTH_TIMEOUT_S} s: {last}", file=sys.stderr, flush=True)


def _banner(base_url: str, credentials_file: Path) -> None:
    lines = [f"Arbiter is running at {base_url}/", f"  health: {base_url}/healthz"]
    if credentials_file.exists():
        # Names and roles only: this output ends up in logs, so passwords and the API key stay in the file
        # (mode 0600, written by seed_demo).
        credentials = json.loads(credentials_file.read_text())
        for user in credentials.get("users", []):
            lines.append(f"  login: {user['username']:<10} ({user['role']})")
        lines.append(f"  passwords and the demo API key: {credentials_file} (readable by you only)")
    lines.append("Press Ctrl-C to stop.")
    width = max(len(line) for line in lines)
    print("\n" + "=" * width + "\n" + "\n".join(lines) + "\n" + "=" * width + "\n", flush=True)


def _watch(supervisor: Supervisor, stop_requested: threading.Event, console: LogFollower | None = None) -> None:
    """Until a stop is asked for: say once, clearly, when supervisord gives up on a program; if
    supervisord itself dies, stop what it left running and start it again (at most a few times)."""
    reported: set[str] = set()
    recoveries: list[float] = []
    while not stop_requested.wait(1.0):
        reap_orphans(keep=supervisor.process.pid if supervisor.process else None)
        if not supervisor.running():
            recoveries = [at for at in recoveries if at > time.monotonic() - 300] + [time.monotonic()]
            if len(recoveries) > SUPERVISOR_RECOVERIES:
                raise LaunchError("supervisord keeps dying; see the output above")
            print("arbiter: supervisord died; stopping what it ran and starting it again", file=sys.stderr, flush=True)
            supervisor.recover()
            if console is not None:
                console.follow_supervisord()
            continue
        try:
            states = supervisor.states()
        except (OSError, xmlrpc.client.Error):  # supervisord busy or just died: the next round tells
            continue
        for name, state in states.items():
            if state == "FATAL" and name not in reported:
                print(
                    f"arbiter: {name} keeps crashing at start and will not be restarted again "
                    f"(see {supervisor.log_dir / (name + '.log')}); fix the cause, then restart it with "
                    f"`{Path(sys.executable).parent / 'supervisorctl'} -c {supervisor.config_file} start {name}`",
                    file=sys.stderr,
                    flush=True,
                )
            if state == "FATAL":
                reported.add(name)
            else:
                reported.discard(name)


def run() -> int:
    bind = os.environ.get("ARBITER_BIND", "127.0.0.1")
    port = _int_env("ARBITER_PORT", 8000)
    modelserver_port = _int_env("MODELSERVER_PORT", 8100)
    if not _port_free(bind, port):
        raise LaunchError(f"port {port} on {bind} is already in use: stop what holds it or set ARBITER_PORT")
    run_modelserver = not os.environ.get("ARBITER_MODELSERVER_URL")
    if run_modelserver and not _port_free("127.0.0.1", modelserver_port):
        raise LaunchError(f"port {modelserver_port} for the model server is in use: set MODELSERVER_PORT")

    env, services = prepare_environment()
    env.update({"PORT": str(port), "ARBITER_BIND": bind, "MODELSERVER_PORT": str(modelserver_port)})
    env.setdefault("ARBITER_DEMO_TRICKLE_S", "20")
    if "PROMETHEUS_MULTIPROC_DIR" not in env:
        # Counters from every web and worker process, merged at scrape time; stale files from a
        # previous run would be counted again, so the directory starts empty.
        metrics_dir = Path(env["ARBITER_DATA_DIR"]) / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if run_modelserver:
        env["ARBITER_MODELSERVER_URL"] = f"http://127.0.0.1:{modelserver_port}/v1"

    stop_requested = threading.Event()
    # systemd and `docker stop` send SIGTERM: stop as cleanly as for a Ctrl-C.
    # Python's own handler (KeyboardInterrupt) is set for SIGINT explicitly: a shell that starts
    # `make run` in the background without job control makes its children ignore SIGINT, and
    # `kill -INT` must still stop the product.
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    signal.signal(signal.SIGINT, signal.default_int_handler)
    programs = _programs(services, run_modelserver)
    supervisor = Supervisor(programs, data_dir=Path(env["ARBITER_DATA_DIR"]), env=env, cwd=BASE_DIR)
    console = LogFollower(supervisor)
    become_subreaper()
    try:
        supervisor.start()
        console.start()
        _wait_for_services(supervisor, services)
        _manage(env, "migrate", "--noinput", "-v", "0")
        _manage(env, "collectstatic", "--noinput", "-v", "0")
        _manage(env, "seed_demo")
        supervisor.start_programs(program.name for program in programs if not program.autostart)
        host = "127.0.0.1" if bind in {"0.0.0.0", "::"} else bind
        base_url = f"http://{host}:{port}"
        credentials = Path(env["ARBITER_DATA_DIR"]) / "demo-credentials.json"
        threading.Thread(
            target=_wait_healthy,
            args=(f"{base_url}/healthz", lambda: _banner(base_url, credentials)),
            daemon=True,
        ).start()
        _watch(supervisor, stop_requested, console)
    except KeyboardInterrupt:
        pass
    finally:
        apps = ", ".join(program.name for program in reversed(supervisor.programs) if program.name not in services)
        then = ", then stopping embedded services" if services else ""
        print(f"arbiter: stopping {apps}{then}", flush=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean stop short
        supervisor.stop(timeout=sum(program.stop_wait_s for program in programs) + 30)
        console.stop()
    return 0


def main() -> None:
    try:
        sys.exit(run())
    except (LaunchError, SupervisorError, embedded.EmbeddedServiceError) as exc:
        print(f"arbiter: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
