"""Supervision under `make run`: SIGKILL any one process of the product — the web server's master or a
worker, the Celery worker's main process or a pool child, beat, the model server, the embedded Redis
or the PostgreSQL postmaster — and /healthz is green again within 30 s without anyone touching it (and
within 90 s if supervisord itself is killed), a job submitted afterwards completes, and Ctrl-C still
stops everything cleanly. Run with -s to see the seconds each kind took."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from controlplane import launcher
from controlplane.supervision import START_RETRIES, Program, Supervisor
from tests.support.make_run import Launched, get_health, launch, wait_healthy
from tests.support.process_tree import Proc, ProcessTree

pytestmark = pytest.mark.slow

RECOVERY_DEADLINE_S = 30
# supervisord itself is not one of the product's processes: when it dies the launcher stops everything
# it ran and starts it all again, every Python process at once on the machine's cores.
SUPERVISORD_RECOVERY_DEADLINE_S = 90
# Each kind once, the ones with the most to recover first.
CHILDREN = {"web-master": "web-worker", "worker-main": "worker-child"}
KILLS = [
    "worker-main", "web-master", "modelserver", "redis", "postgres", "beat", "web-worker", "worker-child",
    "supervisord",
]  # fmt: skip


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
    deadline = SUPERVISORD_RECOVERY_DEADLINE_S if kind == "supervisord" else RECOVERY_DEADLINE_S
    while (elapsed := time.monotonic() - killed_at) < deadline:
        assert launched.process.poll() is None, f"the launcher exited after {kind} was killed"
        kinds = tree.kinds()
        successors = [proc for proc in kinds[kind] if proc.pid != victim.pid]
        # As many of its kind as before (a pool child's sibling is no replacement for it).
        replaced = not _alive(victim) and len(successors) >= len(victims)
        if replaced and kind in CHILDREN:
            # A new master counts once it has its own workers (gunicorn's, or the Celery pool).
            replaced = any(child.ppid in {proc.pid for proc in successors} for child in kinds[CHILDREN[kind]])
        if replaced:
            status, last = get_health(f"{launched.base_url}/healthz")
            if status == 200:
                return elapsed
        time.sleep(0.25)
    raise AssertionError(f"{kind} killed: not replaced and healthy within {deadline} s; {last}")


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
    # The worker died once, of its SIGKILL: not of the Redis or PostgreSQL crash (see redis_broker).
    assert output.count("exited: worker (") == 1, output
    assert "arbiter: supervisord died; stopping what it ran and starting it again" in output
    assert ProcessTree(launched.process.pid).descendants() == []


def test_a_process_that_keeps_crashing_at_start_is_given_up_on_with_one_clear_line(capsys):
    data_dir = Path(tempfile.mkdtemp(prefix="arb-sup-"))
    crasher = Program("crasher", ["/bin/sh", "-c", "echo cannot start; exit 3"], priority=100, autostart=True)
    steady = Program("steady", ["/bin/sh", "-c", "exec sleep 600"], priority=100, autostart=True)
    supervisor = Supervisor([crasher, steady], data_dir=data_dir, env=dict(os.environ), cwd=data_dir)
    stop_requested = threading.Event()
    supervisor.start()
    watcher = threading.Thread(target=launcher._watch, args=(supervisor, stop_requested))
    try:
        watcher.start()
        # Backoff of 1 + 2 + 3 + 4 + 5 s between the six tries, then supervisord gives up.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and supervisor.states().get("crasher") != "FATAL":
            time.sleep(0.5)
        assert supervisor.states() == {"crasher": "FATAL", "steady": "RUNNING"}
        said = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "crasher keeps crashing" not in said:
            said += capsys.readouterr().err
            time.sleep(0.2)
        assert "arbiter: crasher keeps crashing at start and will not be restarted again" in said
        assert str(data_dir / "logs" / "crasher.log") in said
    finally:
        stop_requested.set()
        watcher.join(timeout=10)
        supervisor.stop(timeout=30)
    log = (data_dir / "logs" / "supervisord.log").read_text()
    assert log.count("spawned: 'crasher'") == START_RETRIES + 1  # a backoff, not a busy loop
    assert "gave up: crasher entered FATAL state, too many start retries too quickly" in log
    assert (data_dir / "logs" / "crasher.log").read_text().count("cannot start") == START_RETRIES + 1
