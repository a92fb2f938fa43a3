"""Supervision under `make run`: SIGKILL any one process of the product — the web server's master or a
worker, the Celery worker's main process or a pool child, beat, the model server, the embedded Redis
or the PostgreSQL postmaster — and /healthz is green again within 30 s without anyone touching it, a
job submitted afterwards completes, and Ctrl-C still stops everything cleanly."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

import pytest

from tests.support.make_run import Launched, get_health, launch, wait_healthy
from tests.support.process_tree import Proc, ProcessTree

pytestmark = pytest.mark.slow

RECOVERY_DEADLINE_S = 30
# Each kind once, the ones with the most to recover first.
KILLS = ["worker-main", "web-master", "modelserver", "redis", "postgres", "beat", "web-worker", "worker-child"]


def _alive(proc: Proc) -> bool:
    try:
        with open(f"/proc/{proc.pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def kill_and_time_recovery(launched: Launched, tree: ProcessTree, kind: str) -> float:
    """SIGKILL one process of `kind`; seconds until it is replaced and /healthz answers 200."""
    victims = tree.find(kind)
    assert victims, f"no {kind} process under the launcher: {tree.kinds()}"
    victim = victims[0]
    killed_at = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    last = ""
    while (elapsed := time.monotonic() - killed_at) < RECOVERY_DEADLINE_S:
        assert launched.process.poll() is None, f"the launcher exited after {kind} was killed"
        replaced = not _alive(victim) and any(proc.pid != victim.pid for proc in tree.find(kind))
        if replaced:
            status, last = get_health(f"{launched.base_url}/healthz")
            if status == 200:
                return elapsed
        time.sleep(0.25)
    raise AssertionError(f"{kind} killed: not replaced and healthy within {RECOVERY_DEADLINE_S} s; {last}")


def submit_job(launched: Launched, content: str) -> str:
    credentials = json.loads((launched.data_dir / "demo-credentials.json").read_text())
    request = urllib.request.Request(
        f"{launched.base_url}/api/v1/jobs",
        data=json.dumps({"task_type": "general", "messages": [{"role": "user", "content": content}]}).encode(),
        headers={"Authorization": f"Bearer {credentials['api_key']}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
        return json.loads(response.read())["id"]


def wait_settled(launched: Launched, job_id: str, timeout: float = 120) -> dict:
    credentials = json.loads((launched.data_dir / "demo-credentials.json").read_text())
    request = urllib.request.Request(
        f"{launched.base_url}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {credentials['api_key']}"}
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(request, timeout=30) as response:
            job = json.loads(response.read())
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


def test_it_restarts_whichever_process_is_killed_and_stays_healthy():
    launched = launch(WORKER_CONCURRENCY="2")
    recovery: dict[str, float] = {}
    try:
        wait_healthy(f"{launched.base_url}/healthz", launched.process)
        tree = ProcessTree(launched.process.pid)
        for kind in KILLS:
            recovery[kind] = kill_and_time_recovery(launched, tree, kind)
        print("seconds from SIGKILL to /healthz green:", json.dumps({k: round(v, 1) for k, v in recovery.items()}))

        job = wait_settled(launched, submit_job(launched, "after every kind of crash, still served"))
        assert job["status"] == "completed", job
    finally:
        returncode = launched.interrupt()
    output = launched.output()
    assert returncode == 0, output[-3000:]
    assert "stopping web, worker, beat, modelserver, then stopping embedded services" in output
    for kind in ("worker-main", "web-master", "beat", "modelserver", "redis", "postgres"):
        # supervisord said what it saw: the death, and no give-up.
        program = {"worker-main": "worker", "web-master": "web"}.get(kind, kind)
        assert f"exited: {program} (terminated by SIGKILL; not expected)" in output
    assert "entered FATAL state" not in output
    assert ProcessTree(launched.process.pid).descendants() == []
