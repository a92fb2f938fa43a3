"""A whole Arbiter stack for the fault suite: `python -m controlplane.launcher` in a temporary data directory
on ports of our own, so what `make run` does (and whatever supervises its processes) is what is tried.

Its processes, the embedded PostgreSQL and Redis included (supervised programs like the rest), are found by
walking the process tree under the launcher's PID in /proc (tests.support.process_tree), never by a name
pattern that could hit another checkout's. A service is taken down the way a crash takes it and brought back
by the launcher's supervision alone, as an operator would expect of `make run`.
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

from tests.support.make_run import launcher_env, wait_healthy
from tests.support.process_tree import Proc, ProcessTree, alive

BASE_DIR = Path(__file__).resolve().parents[2]
RABBITMQ_VHOST = "arbiter-chaos"
RABBITMQ_URL = f"amqp://guest:guest@127.0.0.1:5672/{RABBITMQ_VHOST}"


def _ensure_rabbitmq_vhost() -> None:
    """A vhost of the suite's own, made fresh: no queue or control message of anyone else's, none left over."""
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", RABBITMQ_VHOST], capture_output=True, check=False)
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", RABBITMQ_VHOST], capture_output=True, check=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", RABBITMQ_VHOST, "guest", ".*", ".*", ".*"],
        capture_output=True,
        check=True,
    )


def rabbitmq_queue_types() -> dict[str, str]:
    """Each durable queue on the suite's vhost (the ones that hold tasks), with its type (classic, quorum).
    Celery's event and control (pidbox) queues are transient and auto-deleted, which a quorum queue cannot be."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", RABBITMQ_VHOST, "--no-table-headers", "name", "type", "durable"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    return {row[0]: row[1] for row in rows if len(row) == 3 and row[2] == "true"}


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

    @property
    def step_budget_s(self) -> float:
        """The time a step may take in all, every try, wait and fallback included (ARBITER_STEP_BUDGET_S)."""
        return float(self._settings("ARBITER_STEP_BUDGET_S")["ARBITER_STEP_BUDGET_S"])

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
        """The stack's processes by kind (tests.support.process_tree.KINDS): worker-main, worker-child, ..."""
        assert self.launcher is not None
        return {kind: procs for kind, procs in ProcessTree(self.launcher.pid).kinds().items() if procs}

    def pids(self, kind: str) -> list[int]:
        return [proc.pid for proc in self.processes().get(kind, [])]

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

    def crash_service(self, kind: str, signum: signal.Signals, *, back_within_s: float) -> tuple[float, int]:
        """Send `signum` to the embedded service of `kind` (postgres: its postmaster; redis) and wait, doing
        nothing else, for the launcher's supervision to start it again. Returns when a new one runs (a
        `time.time()`) and after how many seconds; AssertionError if it is not back within `back_within_s`."""
        [victim] = self.pids(kind) or [None]
        assert victim is not None, f"no {kind} under the launcher: {sorted(self.processes())}"
        killed = time.time()
        os.kill(victim, signum)
        _wait_gone(victim)
        deadline = time.monotonic() + back_within_s
        while time.monotonic() < deadline:
            if [pid for pid in self.pids(kind) if pid != victim]:
                back = time.time()
                return back, round(back - killed, 1)
            time.sleep(0.1)
        raise AssertionError(f"{kind} not started again by the supervision within {back_within_s:g} s")

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
        if not alive(pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still runs {timeout} s after it was signalled")
