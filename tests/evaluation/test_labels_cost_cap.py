"""The live-labels curve walks a labelled past job by the walk its worker used (routing.decide.cascade),
the job's own cost cap included: an answer the cap kept is the job's answer at every threshold setting
that would have escalated it, as it was live — not a tier the worker would never have reached."""

from __future__ import annotations

from decimal import Decimal

import pytest

from evaluation.calibration.labels import LabelledJob, WalkStep
from evaluation.history_runs import history_run
from routing.decide.cascade import Stop
from routing.decide.router import PlanStep
from routing.models import Job
from routing.models.approvals import ApprovalStatus, DecisionKind
from tests.support.evaluations import past_job, reviewed, shadow_compared
from tests.support.governed import governed

IN_FORCE = {"nano": 0.8, "mini": 0.7}  # cheap-first in tests.pipeline.setup's policy


@pytest.fixture
def setup(db):
    return governed("http://127.0.0.1:9/v1")


def capped(job, cap: str):
    """The job as submitted with constraints.cost_cap_usd (stored as JSON, as the API stores it)."""
    Job.objects.filter(pk=job.pk).update(constraints={**(job.constraints or {}), "cost_cap_usd": float(cap)})
    return job


def points(report) -> dict[tuple[float, float], dict]:
    return {(point["thresholds"]["nano"], point["thresholds"]["mini"]): point for point in report["curve"]}


@pytest.mark.django_db
def test_an_answer_the_cost_cap_kept_is_the_jobs_answer_at_every_threshold(setup) -> None:
    live = setup.policy.versions.get()
    app = setup.application

    def job(name, confidence, cap):
        steps = [("nano", confidence, True, name, 0.0001)]  # kept below its 0.8: the cap was reached
        return capped(past_job(app, live, f"[task:classification] {name}", steps, thresholds=IN_FORCE), cap)

    shadowed = job("shadowed", 0.6, "0.0001")
    shadow_compared(shadowed, shadowed.steps.get(), agree=False, shadow_tier="mini", cost="0.0004")
    approved = job("approved", 0.5, "0.0001")
    reviewed(approved, ApprovalStatus.APPROVED, kind=DecisionKind.APPROVE)

    report, _ = history_run(version=live, application=app.slug)

    curve = points(report)
    assert len(curve) == 21 * 21
    # At the thresholds in force the curve says what happened live: both jobs answered with nano, one wrong
    # (its shadow disagreed) and one approved, for what they paid. Without the cap, the walk would have
    # sent 'shadowed' on to its (right, dearer) shadow answer and 'approved' to a mini it never called.
    assert curve[(0.8, 0.7)] == {**curve[(0.8, 0.7)], "jobs": 2, "accuracy": 0.5, "relative_cost": 1.0}
    # And at every setting: the cap is reached on nano, so no threshold sends either job further.
    assert {(point["jobs"], point["accuracy"], point["relative_cost"]) for point in curve.values()} == {(2, 0.5, 1.0)}


@pytest.mark.django_db
def test_a_cap_reached_on_the_second_tier_keeps_its_answer_and_a_stricter_first_tier_pays_for_both(setup) -> None:
    live = setup.policy.versions.get()
    app = setup.application
    steps = [("nano", 0.6, False, "X", 0.0001), ("mini", 0.65, True, "B", 0.0004)]  # mini kept below its 0.7
    job = capped(past_job(app, live, "[task:classification] mini capped", steps, thresholds=IN_FORCE), "0.0005")
    reviewed(job, ApprovalStatus.APPROVED, kind=DecisionKind.APPROVE)

    report, _ = history_run(version=live, application=app.slug)

    curve = points(report)
    # Escalating nano (any threshold above 0.6) reaches mini, whose answer the cap keeps whatever mini's
    # threshold: approved, at the job's own cost.
    for mini in (0.0, 0.65, 0.7, 0.95, 1.0):
        assert curve[(0.8, mini)] == {**curve[(0.8, mini)], "jobs": 1, "accuracy": 1.0, "relative_cost": 1.0}
    # Keeping nano's 0.6 would keep an answer nobody labelled: those settings are not known, not guessed.
    assert (0.6, 0.7) not in curve and (0.55, 1.0) not in curve


# ---------------------------------------------------------------- the walk itself, without the database


def nano_mini_flagship(*steps: WalkStep, cap: str | None, shadow: WalkStep | None = None, failed=frozenset()):
    return LabelledJob(
        ("nano", "mini", "flagship"),
        steps,
        sum(float(step.cost_usd) for step in steps),
        shadow,
        frozenset(failed),
        None if cap is None else Decimal(cap),
    )


def gates(nano: float, mini: float) -> dict[str, PlanStep]:
    return {"nano": PlanStep("nano", (), nano, ""), "mini": PlanStep("mini", (), mini, "")}


def test_the_cap_is_reached_when_the_recorded_costs_add_up_to_it_not_before() -> None:
    nano = WalkStep("nano", 0.6, 0.8, Decimal("0.0001"), False)
    mini = WalkStep("mini", 0.9, 0.7, Decimal("0.0004"), True)
    under = nano_mini_flagship(nano, mini, cap="0.00010001")
    at = nano_mini_flagship(nano, mini, cap="0.0001")
    assert under.walk(gates(0.8, 0.7)).stop == Stop.CONFIDENT and under.outcome(gates(0.8, 0.7)) == (True, 0.0005)
    assert at.walk(gates(0.8, 0.7)).stop == Stop.COST_CAP and at.outcome(gates(0.8, 0.7)) == (False, 0.0001)
    # Confident enough, the cap does not matter: the same answer either way.
    assert at.outcome(gates(0.6, 0.7)) == under.outcome(gates(0.6, 0.7)) == (False, 0.0001)


def test_the_shadow_answer_counts_towards_the_cap_and_ends_the_walk_as_the_last_step() -> None:
    nano = WalkStep("nano", 0.85, 0.8, Decimal("0.0001"), False)
    shadow = WalkStep("mini", None, None, Decimal("0.0004"), True)
    job = nano_mini_flagship(nano, cap="0.0003", shadow=shadow)
    walk = job.walk(gates(0.9, 1.0))
    # The shadow answer has no confidence to judge: it is where the shadow label's "right" comes from, so
    # the walk over this job ends there (its answer final), whatever mini's threshold.
    assert (walk.stop, walk.final.step.tier, walk.total_cost) == (Stop.FINAL_STEP, "mini", Decimal("0.0005"))
    assert job.outcome(gates(0.9, 1.0)) == (True, 0.0005)


def test_a_tier_that_failed_is_passed_over_and_one_never_called_is_unknown() -> None:
    nano = WalkStep("nano", 0.5, 0.8, Decimal("0.0001"), None)
    flagship = WalkStep("flagship", 0.4, None, Decimal("0.002"), True)
    job = nano_mini_flagship(nano, flagship, cap=None, failed={"mini"})
    assert job.outcome(gates(0.8, 0.7)) == (True, 0.0021)
    never = nano_mini_flagship(nano, cap=None)
    walk = never.walk(gates(0.8, 0.7))
    assert (walk.stop, walk.reason) == (Stop.UNKNOWN, "mini was never called in the job")
    assert never.outcome(gates(0.8, 0.7)) is None
