"""A step's record is written with the job's fenced UPDATE in one statement (fencing.fenced_with_row): it
must write exactly what `fenced` and `Step.objects.create` wrote, and nothing at all for a stale attempt."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from routing.execute.fencing import Claim, StaleAttempt, fenced_with_row
from routing.models import Job, JobStatus, Step, StepOutcome
from tests.support.governed import governed


@pytest.fixture
def running(model_server, db):
    job = governed(model_server.base_url).submit("[task:classification] a running job")
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, attempt=2, claimed_by="test:2")
    return job


def step_of(job: Job, attempt: int) -> Step:
    return Step(
        job_id=job.pk,
        attempt=attempt,
        index=0,
        tier="nano",
        model="sim-nano",
        cost_usd=Decimal("0.00001234"),
        confidence=0.93,
        outcome=StepOutcome.ACCEPTED,
        output={"content": "billing", "tool_calls": []},
    )


def test_it_writes_the_step_and_the_jobs_fields_for_the_attempt_that_holds_it(running):
    step = step_of(running, 2)
    result = {"output": {"content": "billing"}, "step_index": 0, "tier": "nano"}
    with fenced_with_row(
        Claim(str(running.pk), 2, "test:2"),
        step,
        status=JobStatus.COMPLETED,
        result=result,
        total_cost_usd=Decimal("0.00001234"),
        finished_at=timezone.now(),
    ):
        pass
    stored = Step.objects.get(pk=step.pk)
    assert (stored.job_id, stored.attempt, stored.tier, stored.output) == (running.pk, 2, "nano", step.output)
    assert stored.cost_usd == Decimal("0.00001234") and stored.confidence == 0.93 and stored.created_at
    assert stored.calls == 1 and stored.error == ""  # the model's defaults, as create() wrote them
    job = Job.objects.get(pk=running.pk)
    assert (job.status, job.result, job.lease_expires_at) == (JobStatus.COMPLETED, result, None)
    assert job.total_cost_usd == Decimal("0.00001234")


def test_a_stale_attempt_writes_nothing(running):
    stale = Claim(str(running.pk), 1, "test:1")
    with pytest.raises(StaleAttempt), fenced_with_row(stale, step_of(running, 1), status=JobStatus.COMPLETED):
        pytest.fail("a stale attempt's block must not run")
    assert not Step.objects.filter(job_id=running.pk).exists()
    assert Job.objects.get(pk=running.pk).status == JobStatus.RUNNING
