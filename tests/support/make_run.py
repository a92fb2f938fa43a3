"""`make run` in a test: the launcher on free ports and a temporary data directory, its /healthz, and
a clean stop. Used by tests/controlplane/test_launcher.py and test_supervision.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

BASE_DIR = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launcher_env(data_dir: str, port: int, modelserver_port: int, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ARBITER_", "DATABASE_", "REDIS_", "CELERY_", "MODELSERVER_"))
    }
    env.update(
        ARBITER_DATA_DIR=data_dir,
        ARBITER_PORT=str(port),
        MODELSERVER_PORT=str(modelserver_port),
        WEB_CONCURRENCY="1",
        WORKER_CONCURRENCY="1",
    )
    env.update(extra)
    return env


def get_health(url: str) -> tuple[int, str]:
    """(status, body) of one /healthz request; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 150) -> dict:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        assert process.poll() is None, "the launcher exited before it was healthy"
        status, body = get_health(url)
        if status == 200:
            return json.loads(body)
        last = body
        time.sleep(1)
    raise AssertionError(f"/healthz never answered 200: {last}")


@dataclass
class Launched:
    """A running launcher (`python -m controlplane.launcher`) with its output in `log`."""

    process: subprocess.Popen
    log: IO[str]
    data_dir: Path
    port: int
    env: dict[str, str] = field(repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def interrupt(self, timeout: float = 90) -> int:
        """Ctrl-C, and the launcher's exit status once it has stopped everything."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def launch(**extra_env: str) -> Launched:
    data_dir = tempfile.mkdtemp(prefix="arb-launch-")
    port = free_port()
    env = launcher_env(data_dir, port, free_port(), **extra_env)
    log = open(Path(data_dir) / "launcher.log", "w+")  # noqa: SIM115 (read after the process ends)
    process = subprocess.Popen(
        [sys.executable, "-m", "controlplane.launcher"],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return Launched(process=process, log=log, data_dir=Path(data_dir), port=port, env=env)
