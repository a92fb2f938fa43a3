"""replay_history: past jobs re-decided under a draft version from their recorded steps, nothing guessed."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.ledger import Actor
from evaluation.history_runs import history_run
from evaluation.recorded.outcomes import EvaluationError
from routing.models import Evaluation, EvaluationKind, Step, StepOutcome
from routing.services.policies import policy_create, policy_version_create
from tests.support.evaluations import DRAFT_POLICY, HAND_POLICY, make_job, run_json
from tests.support.factories import ApplicationFactory


@pytest.fixture
def history(catalog):
    actor = Actor.system("test")
    original = policy_version_create(policy=policy_create(name="live", actor=actor), source=HAND_POLICY, author=None)
    draft = policy_version_create(policy=original.policy, source=DRAFT_POLICY, author=None, parent=original)
    app, other = ApplicationFactory(), ApplicationFactory()
    jobs = {
        "kept": make_job(app, original, "classification", [("nano", 0.85, "logprob", True, "A", 0.001)]),
        "cheaper": make_job(
            app,
            original,
            "classification",
            [("nano", 0.6, "logprob", False, "A", 0.001), ("mini", 0.95, "logprob", True, "B", 0.004)],
        ),
        "never-called": make_job(app, original, "coding", [("mini", 0.8, "logprob", True, "C", 0.004)]),
        "held": make_job(
            app,
            original,
            "coding",
            [("mini", 0.6, "logprob", False, "D", 0.004), ("flagship", 0.4, "logprob", True, "E", 0.02)],
            held=["unsure"],
        ),
        "other-method": make_job(app, original, "extraction", [("nano", 0.9, "self_report", True, "F", 0.001)]),
        "other-app": make_job(other, original, "coding", [("mini", 0.95, "logprob", True, "G", 0.004)]),
    }
    failed = make_job(app, original, "coding", [("flagship", 0.9, "logprob", True, "H", 0.02)])
    Step.objects.filter(job=failed).update(index=1)
    Step.objects.create(job=failed, attempt=1, index=0, tier="mini", outcome=StepOutcome.FAILED, error="503")
    return draft, app, jobs


@pytest.mark.django_db
def test_it_reports_what_the_draft_would_change_and_what_it_cannot_know(history) -> None:
    draft, app, _ = history
    report = run_json("replay_history", "--policy-version", str(draft.pk), "--application", app.slug)
    assert (report["jobs"], report["decided"], report["unknown"]) == (6, 3, 3)
    assert report["unknown_reasons"] == {
        "mini failed in the original": 1,
        "flagship was never called in the original": 1,
        "nano's recorded confidence (self_report) is not what the draft scores with (logprob)": 1,
    }
    assert report["final_tier_changed"] == 1
    assert report["final_tier_transitions"] == {"mini->nano": 1}
    assert report["answers_differ"] == 1
    assert report["escalation_rate"] == {
        "original": {"nano": 0.5, "mini": 0.5, "flagship": 0.0},
        "draft": {"nano": 0.0, "mini": 1.0, "flagship": 0.0},
    }
    assert report["cost_usd"]["original"] == pytest.approx(0.001 + 0.005 + 0.024)
    assert report["cost_usd"]["draft"] == pytest.approx(0.001 + 0.001 + 0.024)
    assert report["approvals"]["original_held"] == report["approvals"]["draft_held"] == 1
    assert report["approvals"]["draft_by_rule"] == {"unsure": 1}
    assert [change["draft_tier"] for change in report["changes"]] == ["nano"]
    evaluation = Evaluation.objects.get(pk=report["evaluation"])
    assert (evaluation.kind, evaluation.policy_version) == (EvaluationKind.HISTORY, draft)


@pytest.mark.django_db
def test_the_filters_choose_the_jobs(history) -> None:
    draft = history[0]
    assert run_json("replay_history", "--policy-version", str(draft.pk))["jobs"] == 7
    assert run_json("replay_history", "--policy-version", str(draft.pk), "--limit", "2")["jobs"] == 2
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    assert run_json("replay_history", "--policy-version", str(draft.pk), "--since", tomorrow)["jobs"] == 0
    assert run_json("replay_history", "--policy-version", str(draft.pk), "--until", tomorrow)["jobs"] == 7


@pytest.mark.django_db
def test_without_json_it_prints_a_summary(history) -> None:
    out = io.StringIO()
    call_command("replay_history", "--policy-version", str(history[0].pk), stdout=out)
    assert "final tier changes: 1" in out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--policy-version", "999999"], "no policy version has id 999999"),
        (["--policy-version", "1", "--since", "last tuesday"], "not an ISO date"),
        (["--policy-version", "1", "--limit", "0"], "--limit must be at least 1"),
        (["--policy-version", "1", "--mode", "full"], "give --cost-cap"),
        (["--policy-version", "1", "--cost-cap", "5"], "applies to --mode full only"),
        (["--policy-version", "1", "--mode", "full", "--cost-cap", "0"], "must be above 0"),
        (["--policy-version", "1", "--mode", "full", "--cost-cap", "-1"], "must be above 0"),
        (["--policy-version", "1", "--mode", "full", "--cost-cap", "NaN"], "must be above 0"),
        (["--policy-version", "1", "--mode", "full", "--cost-cap", "five"], "not an amount in USD"),
    ],
)
def test_bad_input_is_a_clear_error(arguments: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("replay_history", *arguments)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mode", "cap", "message"),
    [
        ("full", None, "needs a cost cap"),
        ("routing", 1.0, "applies to full re-execution only"),
        ("full", 0, "above 0"),
        ("full", Decimal("-0.01"), "above 0"),
        ("full", float("inf"), "above 0"),
        ("full", "1", "must be a number"),
        ("shadow", None, "mode must be one of routing, full"),
    ],
)
def test_the_service_refuses_bad_mode_and_cap(history, mode, cap, message) -> None:
    with pytest.raises(EvaluationError, match=message):
        history_run(version=history[0], mode=mode, cost_cap_usd=cap)
    assert not Evaluation.objects.exists()


@pytest.mark.django_db
def test_routing_mode_reports_its_mode_and_progress(history) -> None:
    calls: list[tuple[int, int]] = []
    report, evaluation = history_run(version=history[0], progress=lambda done, total: calls.append((done, total)))
    assert report["mode"] == evaluation.parameters["mode"] == "routing"
    assert calls[0] == (0, 7) and calls[-1] == (7, 7)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
