"""Budgets, the complexity classifier and metrics, through real workers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from routing.models import Application, JobStatus
from tests.support.governed import POLICY, governed
from tests.support.workers import event_types, events, finished

pytestmark = pytest.mark.slow
CONFIDENT = "[task:classification] [confidence:nano=0.95,mini=0.95,flagship=0.95] budget"


def test_at_the_hard_limit_a_downgrading_policy_keeps_to_the_cheapest_tier(model_server, workers):
    setup = governed(model_server.base_url, policy_source=POLICY + "budgets:\n  on_hard_limit: downgrade\n")
    Application.objects.filter(pk=setup.application.pk).update(monthly_hard_limit_usd=Decimal("0"))
    workers.start()
    job = finished(setup.submit("[task:general] [confidence:mini=0.95,flagship=0.95] over budget", task_type="general"))
    assert job.status == JobStatus.COMPLETED
    assert job.route["plan"]["downgraded"] is True
    assert [step.tier for step in job.steps.all()] == ["mini"]  # the default rule's cascade cut to its first tier


def test_at_the_hard_limit_a_rejecting_policy_rejects_with_a_reason(model_server, workers):
    setup = governed(model_server.base_url, policy_source=POLICY + "budgets:\n  on_hard_limit: reject\n")
    Application.objects.filter(pk=setup.application.pk).update(monthly_hard_limit_usd=Decimal("0"))
    workers.start()
    job = finished(setup.submit(CONFIDENT))
    assert job.status == JobStatus.REJECTED
    assert "budget" in job.status_reason
    assert job.steps.count() == 0


def test_over_the_soft_limit_the_ledger_says_so_and_the_job_runs(model_server, workers):
    setup = governed(model_server.base_url)
    Application.objects.filter(pk=setup.application.pk).update(monthly_soft_limit_usd=Decimal("0"))
    workers.start()
    job = finished(setup.submit(CONFIDENT))
    assert job.status == JobStatus.COMPLETED
    assert "budget.soft_limit_reached" in event_types(job)


def test_a_classifier_policy_calls_the_classifier_and_records_both_estimates(model_server, workers):
    setup = governed(model_server.base_url, policy_source=POLICY + "complexity: {method: classifier, tier: nano}\n")
    workers.start()
    job = finished(setup.submit(CONFIDENT))
    complexity = next(e.body for e in events(job) if e.event_type == "route.decided")["complexity"]
    assert complexity["classifier"]["deployment"] == setup.deployments["nano"].name
    assert complexity["heuristic"]["method"] == "heuristic"
    expected = complexity["classifier"]["score"]
    assert complexity["score"] == (expected if expected is not None else complexity["heuristic"]["score"])


def test_metrics_count_steps_and_show_state(model_server, workers, client):
    setup = governed(model_server.base_url)
    workers.start()
    finished(setup.submit(CONFIDENT))
    body = client.get("/metrics").content.decode()
    assert 'arbiter_jobs{status="completed",task_type="classification"}' in body
    assert f'arbiter_breaker_open{{deployment="{setup.deployments["nano"].name}"}} 0.0' in body
    assert "arbiter_approvals_waiting" in body
