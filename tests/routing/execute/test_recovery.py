"""Recovery within one lease: a worker child SIGKILLed in the middle of a provider call, behind a backlog.

Real parts only: Celery worker processes on a private queue, the local model server (a slow tier), Postgres
and Redis; the sweeper is called every few seconds as beat would. Measured: kill → re-claim, kill →
completion, and the paid calls repeated for steps an earlier attempt had recorded (must be 0).

Run alone to see the figures: `pytest -q -s tests/routing/execute/test_recovery.py -k mid_call`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta

import psutil
import pytest
from django.db import connections
from django.utils import timezone

from audit.models import LedgerEvent
from controlplane.celery import worker_argv
from routing.execute.sweeper import jobs_redispatch_stale
from routing.models import Job, JobStatus
from tests.support.governed import governed
from tests.support.workers import BASE_DIR, Workers, events, finished, swept, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_jobs_left_behind")]

# Larger for a measurement (e.g. ARBITER_TEST_RECOVERY_BACKLOG=60: a backlog longer than a lease to drain).
BACKLOG = int(os.environ.get("ARBITER_TEST_RECOVERY_BACKLOG", "16"))
MINI_SLOW_MS = 1500


def _sweep_like_beat(stop: threading.Event, every_s: float = 10.0) -> None:
    """What beat does (routing.sweep_stale_jobs every 10 s), from this process."""
    try:
        while not stop.wait(every_s):
            jobs_redispatch_stale()
    finally:
        connections.close_all()


def workers_lease_s(workers: Workers) -> int:
    """The lease the workers run with (their settings, not this process's)."""
    code = "import django; django.setup(); from django.conf import settings; print(settings.ARBITER_LEASE_S)"
    shown = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=workers.env, capture_output=True, text=True, check=True
    )
    return int(shown.stdout)


def repeated_paid_calls(job: Job) -> int:
    """Calls paid for a (job, step index) that an earlier attempt had already recorded as answered."""
    called = Counter(event.body["index"] for event in events(job) if event.event_type == "model.called")
    return sum(count - 1 for count in called.values())


def test_a_worker_child_killed_mid_call_is_recovered_within_one_lease_without_paying_again(model_server, workers):
    setup = governed(model_server.base_url)
    mini_model = setup.deployments["mini"].model
    model_server.set_faults(mini_model, slow_ms=MINI_SLOW_MS)
    worker = workers.start(concurrency=2)[0]
    # nano answers and is escalated (a paid, recorded step); mini is slow, so the kill lands in its call.
    jobs = [setup.submit(f"[task:classification] [confidence:nano=0.2,mini=0.95] backlog {n}") for n in range(BACKLOG)]
    victim = wait_for(
        lambda: (
            Job.objects.filter(pk__in=[job.pk for job in jobs], status=JobStatus.RUNNING, steps__index=0)
            .order_by("started_at")
            .first()
        ),
        message="a job whose nano step is recorded and whose mini call is in flight",
    )
    claimed_by = victim.claimed_by
    children = psutil.Process(worker.pid).children()
    assert children, "the worker has pool processes"
    stop = threading.Event()
    sweeper = threading.Thread(target=_sweep_like_beat, args=(stop,), daemon=True)
    sweeper.start()
    try:
        # Which pool process holds the victim is not visible from here: every child is killed, so whichever
        # it is dies mid-call (the other jobs killed with it recover the same way).
        killed_at = time.monotonic()
        for child in children:
            child.send_signal(signal.SIGKILL)
        reclaimed = wait_for(
            lambda: (fresh := Job.objects.get(pk=victim.pk)).attempt >= 2 and fresh,
            timeout=300,
            interval=0.05,
            message="the victim's re-claim",
        )
        reclaim_s = time.monotonic() - killed_at
        done = finished(reclaimed, timeout=300)
        complete_s = time.monotonic() - killed_at
        for job in jobs:
            finished(job, timeout=300)
    finally:
        stop.set()
        sweeper.join(timeout=15)
    repeated = sum(repeated_paid_calls(job) for job in jobs)
    lease = workers_lease_s(workers)
    print(
        f"\nrecovery: lease {lease} s; kill→re-claim {reclaim_s:.1f} s; kill→completed {complete_s:.1f} s; "
        f"repeated paid calls {repeated} (backlog {BACKLOG}, victim was {claimed_by})"
    )
    assert done.status == JobStatus.COMPLETED
    assert all(Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED for job in jobs)
    assert repeated == 0
    assert reclaim_s < lease, f"re-claimed {reclaim_s:.1f} s after the kill (lease {lease} s)"


def start_without_queues(workers: Workers) -> subprocess.Popen:
    """A worker started as the Procfile starts it, naming no queues: it reads its default queue (ARBITER_QUEUE)
    and, through routing.tasks, the recovery queue first."""
    argv = worker_argv(queue=workers.queue, concurrency=1, name="procfile")
    at = argv.index("--queues")
    process = subprocess.Popen(
        [*argv[:at], *argv[at + 2 :], "--without-heartbeat"], cwd=BASE_DIR, env=workers.env, start_new_session=True
    )
    workers.processes.append(process)
    return process


@pytest.mark.parametrize("named_queues", [True, False], ids=["queues-named", "procfile"])
def test_a_recovered_job_is_claimed_before_the_backlog(model_server, workers, settings, named_queues):
    settings.ARBITER_DISPATCH_STALE_S = 30
    setup = governed(model_server.base_url)
    # No worker yet: these wait on the default queue, and so does the last one's own first message.
    backlog = [setup.submit(f"[task:classification] [confidence:nano=0.95] backlog {n}") for n in range(8)]
    lost = setup.submit("[task:classification] [confidence:nano=0.95] its worker died")
    # As if a worker had claimed it a minute ago and died: the sweeper finds the lease lost.
    Job.objects.filter(pk=lost.pk).update(
        status=JobStatus.RUNNING,
        attempt=1,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
        dispatched_at=timezone.now() - timedelta(seconds=60),
    )
    assert swept(lost)
    if named_queues:
        workers.start(concurrency=1)
    else:
        start_without_queues(workers)
    for job in [*backlog, lost]:
        finished(job)
    claims = LedgerEvent.objects.filter(
        event_type="route.decided", subject_job__in=[str(job.pk) for job in [*backlog, lost]]
    ).order_by("id")
    assert claims.first().subject_job == str(lost.pk)
    assert Job.objects.get(pk=lost.pk).attempt == 2
