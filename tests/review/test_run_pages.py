"""The run pages: a run's calls in order (a subagent's under the planner call before it) with tier, cost,
latency, confidence, escalations and holds; totals by tier; the workload profile; the run's limits against
its policy; the runs list with its filters; and a held call's page that puts it in its run."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from controlplane.roles import Role
from routing.models import Job, JobStatus, Run
from tests.support.builders import active_policy, held_job
from tests.support.factories import ApplicationFactory, UserFactory
from tests.support.governed import POLICY

RUNS_POLICY_TAIL = """
runs:
  max_flagship_calls: {limit: 1, on_limit: downgrade}
  max_cost_usd: {limit: 5, on_limit: hold}
  max_flagship_share: {limit: 0.5, on_limit: downgrade}
"""


@pytest.fixture
def reader(client, db):
    client.force_login(UserFactory(roles=[Role.REVIEWER]))
    return client


def call(version, run, *, role: str, tier: str, status=JobStatus.COMPLETED, task="classification", cost="0.001",
         escalations=0, seconds: float = 1.5, reached=None) -> Job:
    job = Job.objects.get(pk=held_job(version=version, application=run.application, task_type=task, tier=tier).pk)
    Job.objects.filter(pk=job.pk).update(
        run=run, run_role=role, status=status, final_tier=tier, total_cost_usd=Decimal(cost), escalations=escalations,
        finished_at=None if status == JobStatus.AWAITING_APPROVAL else job.created_at + timedelta(seconds=seconds),
        run_admission={"facts": {}, "reached": reached or [], "flagship": tier == "flagship"},
    )
    return Job.objects.get(pk=job.pk)


@pytest.fixture
def run_with_a_held_call(db):
    version = active_policy(source=POLICY + RUNS_POLICY_TAIL)
    run = Run.objects.create(application=ApplicationFactory(), calls=4, flagship_calls=1, cost_usd=Decimal("0.0451"))
    planner = call(version, run, role="planner", tier="flagship", task="general", cost="0.04")
    first = call(version, run, role="subagent", tier="nano", cost="0.0001")
    second = call(version, run, role="subagent", tier="mini", cost="0.005", escalations=1)
    reached = [{"limit": "max_flagship_calls", "value": 1, "observed": 1, "action": "downgrade"}]
    held = call(version, run, role="subagent", tier="mini", status=JobStatus.AWAITING_APPROVAL, cost="0.0001",
                reached=reached)
    return run, [planner, first, second, held]


def test_the_run_page_shows_its_calls_in_order_with_totals_limits_and_workload(reader, run_with_a_held_call):
    run, jobs = run_with_a_held_call
    page = reader.get(f"/runs/{run.pk}/")
    assert page.status_code == 200
    text = page.content.decode()
    positions = [text.index(str(job.pk)[:8]) for job in jobs]
    assert positions == sorted(positions)  # oldest first
    calls = page.context["calls"]
    assert [(c.job.run_role, c.depth) for c in calls] == [("planner", 0), ("subagent", 1), ("subagent", 1),
                                                          ("subagent", 1)]
    assert calls[0].latency_s == pytest.approx(1.5) and calls[3].latency_s is None  # the held one is not finished
    assert [(t.tier, t.calls, t.cost_usd) for t in page.context["tiers"]] == [
        ("nano", 1, Decimal("0.0001")), ("mini", 2, Decimal("0.0051")), ("flagship", 1, Decimal("0.04"))
    ]
    (general, classification) = page.context["workload"][1], page.context["workload"][0]
    assert (classification.task_type, classification.calls, classification.escalated) == ("classification", 3, 1)
    assert classification.by_tier == {"nano": 1, "mini": 2} and general.by_tier == {"flagship": 1}
    limits = {item["limit"].name: (item["observed"], item["limit"].limit, item["limit"].on_limit)
              for item in page.context["limits"]}
    assert limits == {
        "max_flagship_calls": (1, 1, "downgrade"),
        "max_cost_usd": (0.0451, 5, "hold"),
        "max_flagship_share": (0.25, 0.5, "downgrade"),
    }
    assert page.context["held"] == 1
    assert "max_flagship_calls: downgrade" in text  # what the run's limit did to the held call


def test_a_held_calls_page_puts_it_in_its_run(reader, run_with_a_held_call):
    run, jobs = run_with_a_held_call
    text = reader.get(f"/jobs/{jobs[3].pk}/").content.decode()
    assert "Part of an agent run" in text
    assert f'/runs/{run.pk}/?job={jobs[3].pk}' in text
    assert "4 calls so far" in text and "max_flagship_calls" in text
    here = reader.get(f"/runs/{run.pk}/?job={jobs[3].pk}").content.decode()
    assert 'class="depth-1 here"' in here and here.count('aria-current="true"') == 1


def test_the_runs_list_filters_by_application_state_and_held_calls(reader, run_with_a_held_call):
    run, _ = run_with_a_held_call
    quiet = Run.objects.create(application=ApplicationFactory(), closed_at=timezone.now())
    listed = lambda query: {r.pk for r in reader.get(f"/runs/?{query}").context["runs"]}  # noqa: E731
    assert {run.pk, quiet.pk} <= listed("")
    assert listed(f"application={run.application.slug}") == {run.pk}
    assert run.pk in listed("held=1") and quiet.pk not in listed("held=1")
    assert quiet.pk in listed("state=closed") and run.pk not in listed("state=closed")
    assert run.pk in listed("state=open") and quiet.pk not in listed("state=open")
    row = reader.get(f"/runs/?application={run.application.slug}").content.decode()
    assert "held for approval" in row


def test_an_unknown_run_is_a_404_and_a_policy_admin_cannot_read_runs(reader, client, db):
    import uuid

    assert reader.get(f"/runs/{uuid.uuid4()}/").status_code == 404
    admin = client.__class__()
    admin.force_login(UserFactory(roles=[Role.POLICY_ADMIN]))
    assert admin.get("/runs/").status_code == 403
