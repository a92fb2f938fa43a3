"""``python -m modelserver`` as ``make run`` starts it: ready line, fault flags, clean stop, exit codes."""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "modelserver", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ready_url(process: subprocess.Popen[str], timeout: float = 15) -> str:
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    assert readable, "the server printed no ready line"
    line = process.stdout.readline()
    assert line.startswith("modelserver ready at http://127.0.0.1:"), line
    return next(word for word in line.split() if word.startswith("http://"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelserver", *args], cwd=ROOT, capture_output=True, text=True, timeout=30
    )


@pytest.fixture
def cli_server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = start(
        "--port", "0", "--latency-scale", "0", "--fault", "sim-nano-b:error_rate=1.0,retry_after=2"
    )
    try:
        yield process, ready_url(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_it_serves_until_signalled_then_exits_cleanly(cli_server: tuple, signum: int) -> None:
    process, url = cli_server
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)

    assert client.chat.completions.create(
        model="sim-nano", messages=[{"role": "user", "content": "hi"}]
    ).usage
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="sim-nano-b", messages=[{"role": "user", "content": "hi"}])

    started = time.monotonic()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert time.monotonic() - started < 5
    assert "Traceback" not in stderr


def test_it_exits_2_with_one_line_when_the_port_is_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run("--port", str(port))

    assert result.returncode == 2
    assert result.stderr == f"modelserver: cannot listen on 127.0.0.1:{port}: address already in use\n"
    assert result.stdout == ""


def test_it_exits_2_with_one_line_for_a_bad_outcomes_file(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.jsonl"
    item = {"id": "a", "messages": [{"role": "user", "content": "q"}], "responses": {"m": {"content": "x"}}}
    path.write_text(json.dumps(item) + "\n{oops\n")

    result = run("--mode", "recorded", "--outcomes", str(path), "--port", "0")

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"modelserver: {path}:2: not valid JSON (Expecting property name enclosed in double quotes)"
    ]


def test_it_exits_2_for_a_bad_fault_flag() -> None:
    result = run("--port", "0", "--fault", "sim-nano:error_rate=lots")

    assert result.returncode == 2
    assert "error_rate must be a number between 0 and 1" in result.stderr
