"""The launcher, bounded: `make run`'s process brings every part up on embedded services, a real worker
consumes a real task from the real broker, and Ctrl-C stops everything and leaves the data consistent."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.support.make_run import free_port, launcher_env, wait_healthy

BASE_DIR = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_it_starts_every_part_and_stops_them_cleanly():
    data_dir = tempfile.mkdtemp(prefix="arb-launch-")
    port, modelserver_port = free_port(), free_port()
    env = launcher_env(data_dir, port, modelserver_port)
    log = open(Path(data_dir) / "launcher.log", "w+")  # noqa: SIM115 (read after the process ends)
    process = subprocess.Popen(
        [sys.executable, "-m", "controlplane.launcher"],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        health = wait_healthy(f"http://127.0.0.1:{port}/healthz", process)
        assert {name for name, check in health["checks"].items() if check["up"]} == {
            "database",
            "broker",
            "workers",
            "model_server",
        }
        credentials = json.loads((Path(data_dir) / "demo-credentials.json").read_text())
        assert {user["username"] for user in credentials["users"]} >= {
            "admin",
            "admin2",
            "reviewer",
            "reviewer2",
            "auditor",
        }

        # A real task through the real broker to the real worker.
        nonce = uuid.uuid4().hex
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                (
                    "import django, time; django.setup();"
                    "from controlplane.celery import ping; from controlplane.redis_client import get_redis;"
                    f"ping.delay('{nonce}');"
                    "deadline = time.time() + 30\n"
                    f"while time.time() < deadline and not get_redis().get('arbiter:ping:{nonce}'):\n"
                    "    time.sleep(0.2)\n"
                    f"print(get_redis().get('arbiter:ping:{nonce}'))"
                ),
            ],
            cwd=BASE_DIR,
            env={**env, "DJANGO_SETTINGS_MODULE": "controlplane.settings"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert probe.stdout.strip() == "b'pong'", probe.stderr
    finally:
        process.send_signal(signal.SIGINT)
        try:
            returncode = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    log.seek(0)
    output = log.read()
    assert returncode == 0, output[-3000:]
    assert "stopping embedded services" in output
    status = subprocess.run(
        [sys.executable, "-m", "controlplane.embedded", "status"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "postgres: stopped" in status and "redis: stopped" in status
    with socket.socket() as again:
        # The web port is free again (a server's closed connections may linger in TIME_WAIT, which
        # SO_REUSEADDR allows, as gunicorn itself sets it).
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


def test_it_refuses_a_port_in_use_with_one_line():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = launcher_env(tempfile.mkdtemp(prefix="arb-launch-"), port, free_port())
        result = subprocess.run(
            [sys.executable, "-m", "controlplane.launcher"],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"arbiter: port {port} on 127.0.0.1 is already in use: stop what holds it or set ARBITER_PORT"
    )


def test_it_refuses_an_unreachable_broker_with_one_line():
    env = launcher_env(tempfile.mkdtemp(prefix="arb-launch-"), free_port(), free_port())
    env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    result = subprocess.run(
        [sys.executable, "-m", "controlplane.launcher"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("arbiter: the broker at CELERY_BROKER_URL is unreachable"), result.stderr
    subprocess.run(
        [sys.executable, "-m", "controlplane.embedded", "stop"], cwd=BASE_DIR, env=env, check=False
    )
