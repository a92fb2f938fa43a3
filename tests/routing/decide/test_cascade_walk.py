"""The one cascade walk (routing.decide.cascade) that live execution, both replays and the offline
simulation share: thresholds, the last step, an unavailable tier, an unknown answer and the job's cost cap."""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path

import pytest

from routing.decide.cascade import Answered, Stop, Unavailable, Unknown, cascade_walk
from routing.decide.router import PlanStep

NANO = PlanStep("nano", ("nano-1",), 0.8, "logprob")
MINI = PlanStep("mini", ("mini-1",), 0.7, "logprob")
FLAGSHIP = PlanStep("flagship", ("flagship-1",), None, "logprob")
PLAN = (NANO, MINI, FLAGSHIP)


def source(answers: dict[str, object]):
    """Answers by tier: (confidence, cost) tuples, or an Unavailable / Unknown; records what was asked."""
    asked: list[str] = []

    def answer_for_step(index: int, step: PlanStep):
        asked.append(step.tier)
        answer = answers[step.tier]
        if isinstance(answer, tuple):
            confidence, cost = answer
            return Answered(confidence, Decimal(cost), answer=f"{step.tier} says hi")
        return answer

    return answer_for_step, asked


def test_a_confident_first_step_ends_the_walk_and_later_tiers_are_never_asked():
    answer_for_step, asked = source({"nano": (0.95, "0.001"), "mini": (0.9, "0.002"), "flagship": (0.9, "0.01")})
    walk = cascade_walk(PLAN, answer_for_step, cost_cap_usd=None)
    assert asked == ["nano"]
    assert (walk.stop, walk.final.step.tier, walk.final.result.answer) == (Stop.CONFIDENT, "nano", "nano says hi")
    assert walk.total_cost == Decimal("0.001")


def test_strictly_below_the_threshold_escalates_and_equal_is_kept():
    answer_for_step, asked = source({"nano": (0.79, "0.001"), "mini": (0.7, "0.002"), "flagship": (0.9, "0.01")})
    walk = cascade_walk(PLAN, answer_for_step, cost_cap_usd=None)
    assert asked == ["nano", "mini"]
    assert [(visit.step.tier, visit.accepted) for visit in walk.visits] == [("nano", False), ("mini", True)]
    assert walk.stop == Stop.CONFIDENT and walk.total_cost == Decimal("0.003")


def test_the_last_step_answer_is_final_however_unsure():
    answer_for_step, asked = source({"nano": (0.1, "0.001"), "mini": (0.1, "0.002"), "flagship": (0.01, "0.01")})
    walk = cascade_walk(PLAN, answer_for_step, cost_cap_usd=None)
    assert asked == ["nano", "mini", "flagship"]
    assert (walk.stop, walk.final.step.tier) == (Stop.FINAL_STEP, "flagship")
    assert walk.total_cost == Decimal("0.013")


def test_the_job_cost_cap_ends_the_cascade_at_the_step_that_reaches_it():
    answers = {"nano": (0.5, "0.001"), "mini": (0.6, "0.002"), "flagship": (0.9, "0.01")}
    answer_for_step, asked = source(answers)
    # After nano 0.001 < 0.0025: escalate; after mini 0.003 >= 0.0025: mini's unsure answer is kept.
    walk = cascade_walk(PLAN, answer_for_step, cost_cap_usd=Decimal("0.0025"))
    assert asked == ["nano", "mini"]
    assert (walk.stop, walk.final.step.tier, walk.total_cost) == (Stop.COST_CAP, "mini", Decimal("0.003"))
    assert [visit.accepted for visit in walk.visits] == [False, True]

    # Reaching the cap exactly counts as reached.
    answer_for_step, asked = source(answers)
    walk = cascade_walk(PLAN, answer_for_step, cost_cap_usd=Decimal("0.003"))
    assert walk.stop == Stop.COST_CAP and asked == ["nano", "mini"]
    # Just over what nano and mini cost, the cascade goes on to the flagship.
    answer_for_step, asked = source(answers)
    walk = cascade_walk(PLAN, answer_for_step, cost_cap_usd=Decimal("0.0031"))
    assert asked == ["nano", "mini", "flagship"] and walk.stop == Stop.FINAL_STEP


def test_a_confident_answer_under_the_cap_is_confident_and_the_cap_on_the_last_step_changes_nothing():
    answer_for_step, _ = source({"nano": (0.9, "0.005"), "mini": (0.9, "0.002"), "flagship": (0.9, "0.01")})
    assert cascade_walk(PLAN, answer_for_step, cost_cap_usd=Decimal("0.001")).stop == Stop.CONFIDENT
    answer_for_step, _ = source({"nano": (0.1, "0.0001"), "mini": (0.1, "0.0001"), "flagship": (0.9, "0.01")})
    assert cascade_walk(PLAN, answer_for_step, cost_cap_usd=Decimal("0.001")).stop == Stop.FINAL_STEP


def test_a_cost_cap_of_zero_keeps_the_first_answer():
    answer_for_step, asked = source({"nano": (0.1, "0"), "mini": (0.9, "0.002"), "flagship": (0.9, "0.01")})
    walk = cascade_walk(PLAN, answer_for_step, cost_cap_usd=Decimal(0))
    assert asked == ["nano"] and (walk.stop, walk.final.step.tier) == (Stop.COST_CAP, "nano")


def test_an_unavailable_tier_is_passed_over_and_costs_nothing():
    answers = {"nano": Unavailable("nano down"), "mini": (0.6, "0.002"), "flagship": (0.9, "0.01")}
    answer_for_step, asked = source(answers)
    walk = cascade_walk(PLAN, answer_for_step, cost_cap_usd=Decimal("0.002"))
    assert asked == ["nano", "mini"]
    assert [(visit.step.tier, visit.answered, visit.accepted) for visit in walk.visits] == [
        ("nano", False, False),
        ("mini", True, True),
    ]
    assert (walk.stop, walk.final.step.tier, walk.total_cost) == (Stop.COST_CAP, "mini", Decimal("0.002"))
    assert [visit.step.tier for visit in walk.answered] == ["mini"]


def test_an_unavailable_last_tier_leaves_the_job_without_an_answer():
    answers = {"nano": (0.1, "0.001"), "mini": (0.1, "0.002"), "flagship": Unavailable("every flagship failed")}
    walk = cascade_walk(PLAN, source(answers)[0], cost_cap_usd=None)
    assert (walk.stop, walk.final, walk.reason) == (Stop.UNAVAILABLE, None, "every flagship failed")
    assert [visit.stop for visit in walk.visits] == [None, None, Stop.UNAVAILABLE]


def test_an_unknown_answer_stops_the_walk_without_guessing():
    answers = {"nano": (0.1, "0.001"), "mini": Unknown("mini was never called in the original"), "flagship": (1, "0")}
    answer_for_step, asked = source(answers)
    walk = cascade_walk(PLAN, answer_for_step, cost_cap_usd=None)
    assert asked == ["nano", "mini"]
    assert (walk.stop, walk.final, walk.reason) == (Stop.UNKNOWN, None, "mini was never called in the original")
    assert [visit.step.tier for visit in walk.visits] == ["nano"]


def test_each_step_is_reported_as_soon_as_it_is_decided():
    events: list[tuple[str, str]] = []

    def answer_for_step(index: int, step: PlanStep):
        events.append(("asked", step.tier))
        return Unavailable("down") if step.tier == "nano" else Answered(0.1, Decimal("0.001"))

    walk = cascade_walk(
        PLAN, answer_for_step, cost_cap_usd=None, on_visit=lambda v: events.append((str(v.stop), v.step.tier))
    )
    assert events == [
        ("asked", "nano"),
        ("None", "nano"),
        ("asked", "mini"),
        ("None", "mini"),
        ("asked", "flagship"),
        ("final_step", "flagship"),
    ]
    assert walk.stop == Stop.FINAL_STEP


def test_what_the_source_or_the_callback_raises_passes_through():
    class Stale(Exception):
        pass

    def stale(visit):
        raise Stale

    with pytest.raises(Stale):
        cascade_walk(PLAN, lambda index, step: Answered(0.1, 0), cost_cap_usd=None, on_visit=stale)


def test_the_walk_imports_no_django():
    tree = ast.parse((Path(__file__).parents[3] / "routing" / "decide" / "cascade.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    assert not any(name.split(".")[0] == "django" for name in imported if name)


def test_float_costs_add_up_as_floats_and_a_mix_of_decimal_and_float_is_refused():
    floats = {"nano": Answered(0.5, 0.25), "mini": Answered(0.5, 0.5), "flagship": Answered(0.5, 1.0)}
    walk = cascade_walk(PLAN, lambda index, step: floats[step.tier], cost_cap_usd=None)
    assert (walk.stop, walk.total_cost, type(walk.total_cost)) == (Stop.FINAL_STEP, 1.75, float)
    mixed = {**floats, "mini": Answered(0.5, Decimal("0.5"))}
    with pytest.raises(TypeError, match="all Decimal or all float"):
        cascade_walk(PLAN, lambda index, step: mixed[step.tier], cost_cap_usd=None)
