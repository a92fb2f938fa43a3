"""A whole Arbiter stack for the fault suite: `python -m controlplane.launcher` in a temporary data directory
on ports of our own, so what `make run` does (and whatever supervises its processes) is what is tried.

Its processes are found by walking the process tree under the launcher's PID in /proc and matching command
lines, not by asking the supervisor: the suite keeps working whichever supervisor the launcher uses. The
embedded PostgreSQL and Redis are daemons (outside that tree); they are found by their pid files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.controlplane.test_launcher import launcher_env, wait_healthy

BASE_DIR = Path(__file__).resolve().parents[2]
RABBITMQ_VHOST = "arbiter-chaos"
RABBITMQ_URL = f"amqp://guest:guest@127.0.0.1:5672/{RABBITMQ_VHOST}"
SHELLS = {"sh", "bash", "dash"}


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    argv: tuple[str, ...]

    @property
    def program(self) -> str:
        return os.path.basename(self.argv[0]) if self.argv else ""

    @property
    def words(self) -> tuple[str, ...]:
        """The command line without its interpreter: `python .../celery -A x worker` -> (celery, -A, x, worker)."""
        argv = self.argv
        if argv and os.path.basename(argv[0]).startswith("python"):
            argv = argv[1:]
            if argv[:1] == ("-m",):
                argv = argv[1:]
        return tuple(os.path.basename(word) if i == 0 else word for i, word in enumerate(argv))


def _read_proc(pid: int) -> Proc | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The second field (the name) may hold spaces and parentheses: the fields after it follow the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # a zombie is already dead
    return Proc(pid, int(fields[1]), tuple(arg.decode(errors="replace") for arg in argv if arg))


def process_tree(root: int) -> list[Proc]:
    """Every live process under `root` (itself excluded), from /proc."""
    procs = [proc for entry in os.listdir("/proc") if entry.isdigit() and (proc := _read_proc(int(entry)))]
    children: dict[int, list[Proc]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    found, frontier = [], [root]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child.pid)
    return found


def _role(proc: Proc) -> str | None:
    if proc.program in SHELLS:
        return None  # `sh -c "celery ... worker"` holds the same words; the process itself is its child
    words = proc.words
    if not words:
        return None
    if words[0] == "gunicorn" and "controlplane.wsgi" in words:
        return "web"
    if words[0] == "celery" and "worker" in words:
        return "worker"
    if words[0] == "celery" and "beat" in words:
        return "beat"
    if words[0] == "modelserver":
        return "modelserver"
    return None


def processes(root: int) -> dict[str, list[Proc]]:
    """The stack's processes by role: web, web-child, worker, worker-child, beat, modelserver. A `-child` is a
    forked process of the same program under its main one (gunicorn's workers, Celery's prefork pool)."""
    tree = process_tree(root)
    roles = {proc.pid: _role(proc) for proc in tree}
    grouped: dict[str, list[Proc]] = {}
    for proc in tree:
        role = roles[proc.pid]
        if role is None:
            continue
        name = f"{role}-child" if roles.get(proc.ppid) == role else role
        grouped.setdefault(name, []).append(proc)
    return grouped


def _pid_from(path: Path) -> int | None:
    with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
        pid = int(path.read_text().split()[0])
        if _read_proc(pid) is not None:
            return pid
    return None


def _ensure_rabbitmq_vhost() -> None:
    """A vhost of the suite's own, made fresh: no queue or control message of anyone else's, none left over."""
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", RABBITMQ_VHOST], capture_output=True, check=False)
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", RABBITMQ_VHOST], capture_output=True, check=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", RABBITMQ_VHOST, "guest", ".*", ".*", ".*"],
        capture_output=True,
        check=True,
    )


@dataclass
class StackConfig:
    broker: str = "redis"  # "redis": the embedded Redis (the default); "rabbitmq": the loopback RabbitMQ
    port: int = 8900
    modelserver_port: int = 8901
    provider_timeout_s: float = 5.0
    worker_concurrency: int = 2


class Stack:
    """`make run` in a temporary directory. Start it, find and kill its parts, restart its services, stop it."""

    def __init__(self, config: StackConfig, root: Path | None = None) -> None:
        self.config = config
        self.root = root or Path(tempfile.mkdtemp(prefix=f"arb-chaos-{config.broker}-", dir="/tmp"))
        self.data_dir = self.root / "data"
        self.launcher: subprocess.Popen | None = None
        self.log_path = self.root / "launcher.log"
        self.credentials: dict[str, Any] = {}
        self.starts = 0

    # Configuration -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    @property
    def modelserver_url(self) -> str:
        return f"http://127.0.0.1:{self.config.modelserver_port}"

    @property
    def api_key(self) -> str:
        return self.credentials["api_key"]

    @property
    def lease_s(self) -> float:
        """The lease the stack runs with (settings' default for the provider timeout we set)."""
        return float(self._settings()["ARBITER_LEASE_S"])

    def env(self) -> dict[str, str]:
        env = launcher_env(str(self.data_dir), self.config.port, self.config.modelserver_port)
        env.update(
            WEB_CONCURRENCY="2",
            WORKER_CONCURRENCY=str(self.config.worker_concurrency),
            ARBITER_DEMO_TRICKLE_S="0",
            ARBITER_PROVIDER_TIMEOUT_S=f"{self.config.provider_timeout_s:g}",
            ARBITER_BREAKER_COOLDOWN_S="10",
            DJANGO_SETTINGS_MODULE="controlplane.settings",
        )
        if self.config.broker == "rabbitmq":
            env["CELERY_BROKER_URL"] = RABBITMQ_URL
        return env

    def _settings(self, *names: str) -> dict[str, Any]:
        names = names or ("ARBITER_LEASE_S",)
        fields = ", ".join(f"{name!r}: str(settings.{name})" for name in names)
        code = f"import json, django; django.setup(); from django.conf import settings; print(json.dumps({{{fields}}}))"
        output = self.python("-c", code).stdout.strip().splitlines()[-1]
        return json.loads(output)

    # Processes -----------------------------------------------------------------------------------

    def python(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args],
            cwd=BASE_DIR,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def start(self) -> None:
        if self.config.broker == "rabbitmq" and self.starts == 0:
            _ensure_rabbitmq_vhost()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a")  # noqa: SIM115 (the launcher writes to it until it stops)
        self.launcher = subprocess.Popen(
            [sys.executable, "-m", "controlplane.launcher"],
            cwd=BASE_DIR,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.starts += 1
        wait_healthy(f"{self.base_url}/healthz", self.launcher, timeout=240)
        self.credentials = json.loads((self.data_dir / "demo-credentials.json").read_text())

    def alive(self) -> bool:
        return self.launcher is not None and self.launcher.poll() is None

    def stop(self) -> None:
        if self.launcher is not None and self.launcher.poll() is None:
            self.launcher.send_signal(signal.SIGINT)
            try:
                self.launcher.wait(timeout=90)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.launcher.pid, signal.SIGKILL)
                self.launcher.wait(timeout=30)
        # Whatever the launcher left (it stops the embedded services only if it started them, and a killed
        # launcher stops nothing): this directory's services by their own pid files, then any process left
        # whose environment names this data directory (an orphan of a dead launcher) — never by name.
        self.python("-m", "controlplane.embedded", "stop", check=False, timeout=120)
        for pid in self._strays():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _strays(self) -> list[int]:
        marker = f"ARBITER_DATA_DIR={self.data_dir}\0".encode()
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                with contextlib.suppress(OSError):
                    if marker in Path(f"/proc/{entry}/environ").read_bytes():
                        found.append(int(entry))
        return found

    def remove(self) -> None:
        """The temporary directory, once stopped (its launcher.log goes with it: copy it first to keep it)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def processes(self) -> dict[str, list[Proc]]:
        assert self.launcher is not None
        return processes(self.launcher.pid)

    def pids(self, role: str) -> list[int]:
        return [proc.pid for proc in self.processes().get(role, [])]

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(FileNotFoundError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # Embedded services ---------------------------------------------------------------------------

    @property
    def redis_pid(self) -> int | None:
        return _pid_from(self.data_dir / "redis" / "redis.pid")

    @property
    def postgres_pid(self) -> int | None:
        return _pid_from(self.data_dir / "postgres" / "postmaster.pid")

    def kill_redis(self) -> None:
        pid = self.redis_pid
        assert pid is not None, "the embedded Redis is not running"
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)

    def stop_postgres(self) -> None:
        """Down the way a crash takes it: SIGQUIT to the postmaster, PostgreSQL's immediate shutdown (no
        checkpoint; it recovers from its WAL on start). By pid, so it works whoever started the server."""
        pid = self.postgres_pid
        assert pid is not None, "the embedded PostgreSQL is not running"
        os.kill(pid, signal.SIGQUIT)
        _wait_gone(pid)

    def start_services(self) -> None:
        """The embedded services back (what a supervisor or an operator does), each only if it is down."""
        self.python("-m", "controlplane.embedded", "start", timeout=180)

    def add_policy(self, name: str, extra_yaml: str = "") -> subprocess.CompletedProcess:
        """A policy of the suite's own: the demo's rules and `extra_yaml`, active at once (the seed's bootstrap:
        a policy never active before needs no second admin). Kept if it exists; non-zero exit if refused."""
        return self.python("-c", _ADD_POLICY, name, extra_yaml, check=False)

    # The model server's fault knobs --------------------------------------------------------------

    def faults(self, model: str, **knobs: Any) -> None:
        body = json.dumps({"model": model, "reset": True, **knobs}).encode()
        request = urllib.request.Request(
            f"{self.modelserver_url}/_admin/faults", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def clear_faults(self) -> None:
        self.faults("*")

    def modelserver_stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.modelserver_url}/_admin/stats", timeout=10) as response:
            return json.loads(response.read())


_ADD_POLICY = """
import sys, django
django.setup()
from routing.demo.seed import DEFAULT_POLICY_FILE, SEED_ACTOR
from routing.models import Policy
from routing.services.policies import policy_create, policy_version_bootstrap, policy_version_create
name, extra = sys.argv[1], sys.argv[2]
if not Policy.objects.filter(name=name).exists():
    source = DEFAULT_POLICY_FILE.read_text() + extra
    policy = policy_create(name=name, actor=SEED_ACTOR, description="the fault suite's")
    version = policy_version_create(policy=policy, source=source, author=None, comment="fault suite", actor=SEED_ACTOR)
    policy_version_bootstrap(version=version, actor=SEED_ACTOR)
"""


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _read_proc(pid) is None:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still runs {timeout} s after SIGKILL")
