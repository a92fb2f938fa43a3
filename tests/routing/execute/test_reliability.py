"""Crashes and duplicates: a killed worker, a message delivered twice, a job that keeps killing workers."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.redis_client import get_redis
from routing.execute.budgets import month_spend, month_start
from routing.models import Job, JobStatus
from routing.tasks import execute_job
from tests.support.governed import governed
from tests.support.workers import event_types, events, finished, swept, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_jobs_left_behind")]


def test_a_job_whose_worker_is_killed_mid_call_finishes_once_with_the_call_logged_as_attempt_2(
    model_server, workers, settings
):
    settings.ARBITER_DISPATCH_STALE_S = 0
    setup = governed(model_server.base_url)
    nano_model = setup.deployments["nano"].model
    model_server.set_faults(nano_model, slow_ms=5000)
    doomed = workers.start(ARBITER_LEASE_S="3")[0]
    job = setup.submit("[task:classification] [confidence:nano=0.95] killed mid-call")
    wait_for(lambda: Job.objects.get(pk=job.pk).status == JobStatus.RUNNING, message="the first claim")
    time.sleep(0.5)  # the provider call is in flight
    workers.stop(doomed, sig=signal.SIGKILL)
    model_server.reset_faults(nano_model)

    workers.start(ARBITER_LEASE_S="3")
    time.sleep(3.2)  # the dead worker's lease runs out
    assert swept(job)  # what beat does every few seconds
    job = finished(job)

    assert job.status == JobStatus.COMPLETED
    assert job.attempt == 2
    assert event_types(job).count("job.completed") == 1
    called = [event.body for event in events(job) if event.event_type == "model.called"]
    assert [body["attempt"] for body in called] == [2]
    assert list(job.steps.values_list("attempt", "index")) == [(2, 0)]
    assert model_server.stats()["by_model"][nano_model]["200"] >= 1


def test_the_same_task_delivered_twice_writes_one_result(model_server, workers):
    setup = governed(model_server.base_url)
    workers.start(concurrency=2)
    job = setup.submit("[task:classification] [confidence:nano=0.95] twice")
    execute_job.delay(str(job.pk))  # a second delivery of the same job, racing the first
    job = finished(job)
    time.sleep(1.0)
    execute_job.delay(str(job.pk))  # and a late redelivery after it finished
    time.sleep(1.5)

    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.attempt == 1
    assert event_types(job).count("job.completed") == 1
    assert event_types(job).count("model.called") == 1
    assert job.steps.count() == 1


def test_a_poison_job_ends_failed_after_the_attempt_cap(model_server, workers):
    setup = governed(model_server.base_url)
    job = setup.submit("[task:classification] [confidence:nano=0.95] poison")
    # As if three workers had died holding it: the attempt cap (3) is used up and the lease is gone.
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, attempt=3, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    workers.start()
    job = finished(job)
    assert job.status == JobStatus.FAILED
    assert "gave up after 3 attempts" in job.status_reason
    assert event_types(job)[-1] == "job.failed"
    assert job.steps.count() == 0


def test_a_killed_attempt_is_resumed_from_its_recorded_step_and_every_paid_call_counts(model_server, workers, settings):
    settings.ARBITER_DISPATCH_STALE_S = 0
    setup = governed(model_server.base_url)
    mini_model = setup.deployments["mini"].model
    model_server.set_faults(mini_model, slow_ms=5000)
    doomed = workers.start(ARBITER_LEASE_S="3")[0]
    # nano answers (a paid call, recorded as its step) and is escalated; the worker dies during mini's call.
    job = setup.submit("[task:classification] [confidence:nano=0.2,mini=0.95] killed after paying nano")
    wait_for(lambda: Job.objects.get(pk=job.pk).steps.exists(), message="attempt 1's nano step")
    time.sleep(0.5)  # mini's call is in flight
    nano_calls = model_server.stats()["by_model"][setup.deployments["nano"].model]["200"]
    workers.stop(doomed, sig=signal.SIGKILL)
    model_server.reset_faults(mini_model)

    workers.start(ARBITER_LEASE_S="3")
    wait_for(lambda: swept(job), timeout=10, message="the dead worker's lease to run out")
    job = finished(job, timeout=90)  # a new worker boots first: slow on a loaded machine

    assert job.status == JobStatus.COMPLETED and job.attempt == 2
    # Attempt 2 took nano's answer from attempt 1's row: no second nano call, step or event.
    assert model_server.stats()["by_model"][setup.deployments["nano"].model]["200"] == nano_calls
    steps = list(job.steps.order_by("attempt", "index"))
    assert [(step.attempt, step.index, step.tier) for step in steps] == [(1, 0, "nano"), (2, 1, "mini")]
    called = [(e.body["attempt"], e.body["index"]) for e in events(job) if e.event_type == "model.called"]
    assert called == [(1, 0), (2, 1)]
    route = [event.body for event in events(job) if event.event_type == "route.decided"]
    assert route[1]["recorded_steps"] == [{"attempt": 1, "index": 0}]
    assert all(step.cost_usd > 0 for step in steps)
    # The job's totals (what the UI and the webhook read) and the month's spend (what budgets read) are
    # every attempt's, not the last one's; the walk counts the resumed escalation.
    assert job.total_cost_usd == sum(step.cost_usd for step in steps)
    assert job.total_tokens == sum(step.prompt_tokens + step.completion_tokens for step in steps)
    assert job.escalations == 1
    assert job.result["step_index"] == 1
    completed = next(event.body for event in events(job) if event.event_type == "job.completed")
    assert completed["total_cost_usd"] == str(job.total_cost_usd)
    get_redis().delete(f"arbiter:spend:{setup.application.pk}:{month_start():%Y%m}")
    assert month_spend(setup.application) == job.total_cost_usd


def test_a_call_longer_than_the_lease_keeps_it_while_its_worker_lives(model_server, workers, settings):
    settings.ARBITER_DISPATCH_STALE_S = 0
    setup = governed(model_server.base_url)
    nano_model = setup.deployments["nano"].model
    model_server.set_faults(nano_model, slow_ms=13000)  # more than two leases
    # Renewed every third of it: 6 s leaves a starved worker on a loaded machine room to renew in time.
    workers.start(ARBITER_LEASE_S="6")
    job = setup.submit("[task:classification] [confidence:nano=0.95] a long call")
    wait_for(lambda: Job.objects.get(pk=job.pk).status == JobStatus.RUNNING, message="the claim")
    lost, deadline = 0, time.monotonic() + 90
    while Job.objects.get(pk=job.pk).status == JobStatus.RUNNING and time.monotonic() < deadline:
        lost += swept(job)  # beat, at ten times its pace: the lease is never found lost
        time.sleep(0.3)
    job = finished(job)
    model_server.reset_faults(nano_model)
    assert lost == 0
    assert (job.status, job.attempt) == (JobStatus.COMPLETED, 1)
    assert event_types(job).count("model.called") == 1
