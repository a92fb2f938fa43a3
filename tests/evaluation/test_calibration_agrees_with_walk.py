"""Calibration's threshold search stops each item's cascade by its own fast loop (`CascadeCase.final_index`,
run once per item per threshold setting); it must be the rule of the one cascade walk a worker uses
(routing.decide.cascade) with no cost cap: for any plan, confidences, costs and thresholds, the same
step keeps the answer and the same amount is paid."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation.calibration.calibrate import CascadeCase
from evaluation.recorded.responders import Answer
from routing.decide.cascade import Answered, cascade_walk
from routing.decide.router import PlanStep

TIERS = ["nano", "mini", "flagship", "ultra"]
GRID = [0.0, 0.25, 0.5, 0.7, 0.75, 0.8, 0.95, 1.0]  # shared by thresholds and confidences: equality happens
SCORES = st.one_of(st.sampled_from(GRID), st.floats(0.0, 1.0))
THRESHOLDS = st.one_of(st.none(), SCORES)
COSTS = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.1, 1e-7]))


@st.composite
def cases_and_gates(draw):
    tiers = draw(st.lists(st.sampled_from(TIERS), min_size=1, max_size=len(TIERS), unique=True))
    steps = tuple(PlanStep(tier, (f"{tier}-1",), draw(THRESHOLDS), "logprob") for tier in tiers)
    answers = tuple(
        Answer(tier, tier, "", draw(SCORES), "logprob", True, draw(st.booleans()), 1, 1, draw(COSTS), None)
        for tier in tiers
    )
    reference = Answer("ultra", "ultra", "", 1.0, "logprob", True, True, 1, 1, 1.0, None)
    # Calibration's candidate thresholds: some of the plan's tiers (and maybe a tier it has not) get a gate.
    gated = draw(st.lists(st.sampled_from(TIERS), unique=True))
    gates = {tier: PlanStep(tier, (), draw(THRESHOLDS), "") for tier in gated}
    return CascadeCase("item", "rule", steps, answers, reference), gates


@settings(max_examples=500, deadline=None, database=None)
@given(cases_and_gates())
def test_the_threshold_search_stops_where_the_cascade_walk_stops(drawn) -> None:
    case, gates = drawn
    index = case.final_index(gates)

    # The plan a worker would walk under these thresholds: each gated tier's threshold replaces the plan's.
    plan = [replace(step, escalate_below=gates[step.tier].escalate_below) if step.tier in gates else step
            for step in case.steps]  # fmt: skip
    answers = case.answers
    walk = cascade_walk(
        plan, lambda i, step: Answered(answers[i].confidence, answers[i].cost_usd, answers[i]), cost_cap_usd=None
    )

    assert walk.final is not None
    assert index == walk.final.index
    assert case.answers[index] is walk.final.result.answer
    assert case.cumulative_cost[index] == walk.total_cost
