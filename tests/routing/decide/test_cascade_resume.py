"""Resuming a cascade after crashes, as an invariant: whatever attempts die after whatever steps, the
job's walk ends as one uninterrupted walk would, and no step an attempt recorded is paid for again.

Each attempt walks with the runner's rule for recorded steps (`cascade.reusable`); an attempt "dies"
after the steps it recorded, as a worker SIGKILLed between two calls does. (The real runner, worker
processes and model server are exercised by tests/routing/execute/test_reliability.py and
test_recovery.py; this is the rule under every sequence of crashes.)
"""

from __future__ import annotations

import contextlib
from collections import Counter
from decimal import Decimal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from routing.decide import cascade
from routing.decide.router import PlanStep

TIERS = ("nano", "mini", "flagship")


class Died(Exception):
    pass


@st.composite
def plans(draw):
    tiers = sorted(draw(st.lists(st.sampled_from(TIERS), min_size=1, max_size=3, unique=True)), key=TIERS.index)
    thresholds = [draw(st.sampled_from([0.3, 0.6, 0.9])) for _ in tiers[:-1]] + [None]
    steps = zip(tiers, thresholds, strict=True)
    return tuple(PlanStep(tier, (f"{tier}-1",), threshold, "logprob") for tier, threshold in steps)


cents = st.integers(min_value=0, max_value=50).map(lambda n: Decimal(n) / 100)


JOBS = {
    "plan": plans(),
    # Few distinct values, so that thresholds are met, missed and tied often.
    "confidences": st.lists(st.sampled_from([0.0, 0.2, 0.3, 0.5, 0.6, 0.8, 1.0]), min_size=3, max_size=3),
    "costs": st.lists(cents, min_size=3, max_size=3),
    "cap": st.none() | cents,
}


class ResumeMachine(RuleBasedStateMachine):
    @initialize(**JOBS)
    def first_job(self, plan, confidences, costs, cap) -> None:
        self.job(plan, confidences, costs, cap)

    @precondition(lambda self: self.outcome is not None)
    @rule(**JOBS)
    def next_job(self, plan, confidences, costs, cap) -> None:
        self.job(plan, confidences, costs, cap)

    def job(self, plan, confidences, costs, cap) -> None:
        self.plan = plan
        # What each tier answers this job (a model's answer to the same request, whichever attempt asks).
        self.answers = {tier: cascade.Answered(confidences[i], costs[i], "live") for i, tier in enumerate(TIERS)}
        self.cap = cap
        self.recorded: dict[int, tuple[str, cascade.Answered]] = {}  # escalated steps, as attempts recorded them
        self.paid: Counter[str] = Counter()
        self.rerouted = False
        self.outcome: cascade.Walk | None = None

    def attempt(self, dies_after: int | None) -> None:
        visited = 0
        walked = Decimal(0)

        def source(index: int, step: PlanStep) -> cascade.Answered:
            tier, seen = self.recorded.get(index, (None, None))
            if seen is not None and cascade.reusable(
                step,
                tier=tier,
                confidence=seen.confidence,
                walked_cost=walked,
                cost=seen.cost,
                last=index == len(self.plan) - 1,
                cost_cap_usd=self.cap,
            ):
                return cascade.Answered(seen.confidence, seen.cost, "recorded")
            self.paid[step.tier] += 1
            return self.answers[step.tier]

        def record(visit: cascade.Visit) -> None:
            nonlocal visited, walked
            walked = Decimal(visit.total_cost)
            if visit.result.answer == "recorded":
                # The runner writes nothing for a recorded answer: were it the kept one, the job would
                # never get its outcome.
                assert visit.stop is None, "a recorded answer was kept"
            elif visit.stop is None:
                self.recorded[visit.index] = (visit.step.tier, visit.result)
            visited += 1
            if dies_after is not None and visited >= dies_after and visit.stop is None:
                raise Died

        with contextlib.suppress(Died):
            self.outcome = cascade.cascade_walk(self.plan, source, cost_cap_usd=self.cap, on_visit=record)

    @precondition(lambda self: self.outcome is None)
    @rule(after=st.integers(min_value=1, max_value=2))
    def an_attempt_dies(self, after: int) -> None:
        self.attempt(after)

    @precondition(lambda self: self.outcome is None)
    @rule(plan=plans())
    def the_next_attempt_is_routed_differently(self, plan) -> None:
        # A later attempt's route may differ from the dead one's (a budget downgrade, a catalog change).
        self.rerouted = self.rerouted or plan != self.plan
        self.plan = plan

    @precondition(lambda self: self.outcome is None)
    @rule()
    def an_attempt_finishes(self) -> None:
        self.attempt(None)

    @invariant()
    def no_recorded_step_is_paid_for_twice(self) -> None:
        if not self.rerouted:
            assert all(count == 1 for count in self.paid.values()), self.paid

    @invariant()
    def the_walk_ends_as_an_uninterrupted_one(self) -> None:
        if self.outcome is None:
            return
        expected = cascade.cascade_walk(self.plan, lambda _, step: self.answers[step.tier], cost_cap_usd=self.cap)
        assert self.outcome.stop == expected.stop
        assert self.outcome.total_cost == expected.total_cost
        assert [visit.step.tier for visit in self.outcome.visits] == [visit.step.tier for visit in expected.visits]
        if not self.rerouted:
            # Every step the uninterrupted walk answered was paid for exactly once, over all the attempts.
            assert sorted(self.paid, key=TIERS.index) == [visit.step.tier for visit in expected.answered]


TestResume = ResumeMachine.TestCase
TestResume.settings = settings(
    max_examples=300,
    stateful_step_count=12,
    deadline=None,
    derandomize=True,  # reproducible in CI
    suppress_health_check=[HealthCheck.too_slow],
)
