"""The lease heartbeat against real Postgres (its thread has its own connection): it renews a live
attempt's lease, stops once the step's time budget is spent, and notices a superseded attempt."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from routing.execute.fencing import Claim, lease_kept
from routing.models import Job, JobStatus
from tests.support.governed import governed
from tests.support.workers import wait_for

pytestmark = pytest.mark.slow


def lease_of(job: Job):
    return Job.objects.values_list("lease_expires_at", flat=True).get(pk=job.pk)


@pytest.fixture
def running(model_server, live_db, settings):
    settings.ARBITER_LEASE_S = 3  # renewed every second
    job = governed(model_server.base_url).submit("[task:classification] a running job")
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, attempt=1, claimed_by="test:1", lease_expires_at=timezone.now() + timedelta(seconds=3)
    )
    yield job, Claim(job_id=str(job.pk), attempt=1, worker="test:1")
    # Not left for a later test's sweep to find as a lost lease.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED, lease_expires_at=None)


def test_a_live_attempts_lease_is_renewed_until_its_steps_budget_is_spent(running):
    job, claim = running
    first = lease_of(job)
    with lease_kept(claim) as heartbeat:
        wait_for(lambda: lease_of(job) > first, timeout=5, message="a renewal")
        heartbeat.renew_until = time.monotonic()  # the step has used its budget: stuck
        last = lease_of(job)
        wait_for(lambda: timezone.now() > last + timedelta(seconds=1.5), timeout=10, message="the lease to lapse")
        assert lease_of(job) <= last + timedelta(seconds=1.1)  # at most a renewal that was under way
        assert not heartbeat.lost.is_set()


def test_a_superseded_attempt_stops_renewing_and_knows_it(running):
    job, claim = running
    Job.objects.filter(pk=job.pk).update(attempt=2, claimed_by="test:2")
    taken = lease_of(job)
    with lease_kept(claim) as heartbeat:
        assert heartbeat.lost.wait(timeout=5)
    assert lease_of(job) == taken  # the newer attempt's lease is not touched
