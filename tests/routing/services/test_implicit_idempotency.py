"""The implicit idempotency window's edges (routing.services.implicit_idempotency): the window counts
from the first call's answer, a job still running is always the same call (back to the horizon)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from routing.models import ApprovalRequest, Job, JobStatus
from routing.services.implicit_idempotency import ImplicitWindow, candidate_slots, same_call, slot_key
from tests.support.builders import active_policy
from tests.support.factories import ApplicationFactory, ApprovalRequestFactory, JobFactory

pytestmark = pytest.mark.django_db

WINDOW = ImplicitWindow(window_s=30, horizon_s=150)
FINGERPRINT = "f" * 64


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


@pytest.fixture
def earlier():
    """A job of an identical request made `created_s` seconds before `now`, in the state given."""
    version = active_policy()
    application = ApplicationFactory()
    now = time.time()

    def make(created_s: float, status: str, *, answered_s: float | None = None) -> tuple[Job, float]:
        created = now - created_s
        slot = int(created // WINDOW.window_s)
        job = JobFactory(
            application=application,
            policy_version=version,
            status=status,
            idempotency_key=slot_key(FINGERPRINT, slot),
            request_sha256=FINGERPRINT,
            finished_at=None if answered_s is None or status == JobStatus.AWAITING_APPROVAL else at(now - answered_s),
        )
        Job.objects.filter(pk=job.pk).update(created_at=at(created))
        if status == JobStatus.AWAITING_APPROVAL:
            held = ApprovalRequestFactory(job=job)
            ApprovalRequest.objects.filter(pk=held.pk).update(created_at=at(now - answered_s))
        return job, now

    make.application = application
    return make


def test_the_slots_reach_back_over_the_horizon_and_a_window():
    slots = candidate_slots(3000.0, WINDOW)
    assert slots[0] == 100 and slots[-1] == 94 and slots == sorted(slots, reverse=True)


def test_a_job_answered_inside_the_window_is_the_same_call(earlier):
    job, now = earlier(50, JobStatus.COMPLETED, answered_s=10)
    found, key = same_call(earlier.application, FINGERPRINT, WINDOW, now=now)
    assert found == job
    assert key == slot_key(FINGERPRINT, int(now // 30))


def test_a_job_answered_before_the_window_is_another_call(earlier):
    _, now = earlier(80, JobStatus.FAILED, answered_s=40)
    assert same_call(earlier.application, FINGERPRINT, WINDOW, now=now)[0] is None


def test_a_job_still_running_is_the_same_call_until_the_horizon(earlier):
    running, now = earlier(140, JobStatus.RUNNING)
    assert same_call(earlier.application, FINGERPRINT, WINDOW, now=now)[0] == running


def test_a_job_running_since_before_the_horizon_is_another_call(earlier):
    _, now = earlier(200, JobStatus.QUEUED)
    assert same_call(earlier.application, FINGERPRINT, WINDOW, now=now)[0] is None


def test_a_held_job_counts_from_when_it_was_held(earlier):
    held, now = earlier(100, JobStatus.AWAITING_APPROVAL, answered_s=20)
    assert same_call(earlier.application, FINGERPRINT, WINDOW, now=now)[0] == held


def test_a_held_job_held_before_the_window_is_another_call(earlier):
    _, now = earlier(100, JobStatus.AWAITING_APPROVAL, answered_s=60)
    assert same_call(earlier.application, FINGERPRINT, WINDOW, now=now)[0] is None


def test_another_application_never_shares_a_job(earlier):
    _, now = earlier(5, JobStatus.RUNNING)
    assert same_call(ApplicationFactory(), FINGERPRINT, WINDOW, now=now)[0] is None
