"""The Procfile's own web command (gunicorn), started for a test on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class WebServer:
    url: str
    process: subprocess.Popen
    output: list[str] = field(default_factory=list)


@contextmanager
def procfile_web(env: dict[str, str], *, probe_path: str = "/healthz") -> Iterator[WebServer]:
    """Runs `web:` from the Procfile as `make run` does; yields once it answers `probe_path` at all.
    On exit the server is stopped and its whole output is in `.output`."""
    web = next(line for line in (BASE_DIR / "Procfile").read_text().splitlines() if line.startswith("web:"))
    port = _free_port()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # the venv's gunicorn
    process = subprocess.Popen(
        ["bash", "-c", "exec " + web.removeprefix("web:").strip()],
        cwd=BASE_DIR,
        env={**os.environ, **env, "PATH": path, "PORT": str(port), "ARBITER_BIND": "127.0.0.1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    server = WebServer(url=f"http://127.0.0.1:{port}", process=process)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(server.url + probe_path, timeout=10)
            except urllib.error.HTTPError:
                pass  # it answered
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.3)
                continue
            break
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate(timeout=10)
        server.output.append(output)
