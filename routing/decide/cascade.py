"""The cascade walk: a plan's steps in order, each answered, kept or escalated — the one copy of the rule.

Live execution (routing.execute.run), full re-execution of past jobs (evaluation.replay.reexecute),
routing-only replay over recorded steps (evaluation.replay.routing_only) and the offline simulation over
recorded outcomes (evaluation.recorded.simulate) all walk a plan here; only where each step's answer
comes from differs. The source is a callable `answer_for_step(index, step)` returning one of:

- `Answered(confidence, cost, answer)`: the step's scored answer and what it cost (scoring calls
  included); `answer` is the source's own record of it (a call, a recorded step, a recorded outcome);
- `Unavailable(reason, failure)`: the tier could not answer (every deployment failed). The walk moves on to the
  next step; on the last step the job has no answer and fails;
- `Unknown(reason)`: the source cannot say what this step would have answered (a replay reaching a tier
  the original never ran). The walk stops there and says so; it never guesses.

The rule, as a worker has always applied it:
- the costs of the answered steps add up; a job's cost cap (`cost_cap_usd`) is reached when the total
  is at or over it, and ends the cascade at the step that reached it: that step's answer is kept,
  whatever its confidence. The cap is checked after a step has been paid, never before one (the router
  already dropped deployments whose estimated cost alone would be over it);
- otherwise a step's answer is kept when `PlanStep.accepts` its confidence (strictly below the threshold
  escalates; equal is kept), and the last step's answer is always kept: it is final.

`on_visit(visit)` is called once per step as soon as it is decided, before the next step is asked for:
live execution records the step (its row, ledger events and, for the kept answer, the job's outcome)
there. Whatever the source or the callback raises passes through unchanged.

No Django, no I/O: a pure function of the plan, the source's answers and the cap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from routing.decide.router import PlanStep

Cost = Decimal | float | int


@dataclass(frozen=True, slots=True)
class Answered:
    confidence: float
    cost: Cost
    answer: Any = None


@dataclass(frozen=True, slots=True)
class Unavailable:
    reason: str
    failure: Any = None  # the source's own record of it (the failed attempts)


@dataclass(frozen=True, slots=True)
class Unknown:
    reason: str


StepAnswer = Answered | Unavailable | Unknown


class Stop(StrEnum):
    """Why the walk ended."""

    CONFIDENT = "confident"  # a step before the last met its threshold
    COST_CAP = "cost_cap"  # the job's cost cap was reached before the answer was confident enough
    FINAL_STEP = "final_step"  # the last step answered: its answer is final
    UNAVAILABLE = "unavailable"  # the last step's tier could not answer: the job has no answer
    UNKNOWN = "unknown"  # the source could not say what a step would have answered


KEPT = frozenset({Stop.CONFIDENT, Stop.COST_CAP, Stop.FINAL_STEP})


@dataclass(frozen=True, slots=True)
class Visit:
    """One step the walk asked for, and what it decided about it."""

    index: int
    step: PlanStep
    result: Answered | Unavailable
    last: bool  # the plan's last step
    total_cost: Cost  # of the answered steps up to and including this one
    stop: Stop | None  # None: escalated (or, unavailable, moved on)

    @property
    def accepted(self) -> bool:
        return self.stop in KEPT

    @property
    def answered(self) -> bool:
        return isinstance(self.result, Answered)


@dataclass(frozen=True, slots=True)
class Walk:
    visits: tuple[Visit, ...]
    stop: Stop
    total_cost: Cost
    reason: str | None = None  # for UNAVAILABLE and UNKNOWN: the source's reason

    @property
    def final(self) -> Visit | None:
        """The visit whose answer was kept, or None when the walk ended without one."""
        return self.visits[-1] if self.stop in KEPT else None

    @property
    def answered(self) -> tuple[Visit, ...]:
        return tuple(visit for visit in self.visits if visit.answered)


def cascade_walk(
    steps: Sequence[PlanStep],
    answer_for_step: Callable[[int, PlanStep], StepAnswer],
    *,
    cost_cap_usd: Cost | None,
    on_visit: Callable[[Visit], None] | None = None,
) -> Walk:
    """Walk `steps` (a plan's) in order, asking `answer_for_step` for each step's answer until one is kept."""
    visits: list[Visit] = []
    total: Cost = 0
    for index, step in enumerate(steps):
        last = index == len(steps) - 1
        result = answer_for_step(index, step)
        if isinstance(result, Unknown):
            return Walk(tuple(visits), Stop.UNKNOWN, total, result.reason)
        if isinstance(result, Unavailable):
            visit = Visit(index, step, result, last, total, Stop.UNAVAILABLE if last else None)
            visits.append(visit)
            if on_visit is not None:
                on_visit(visit)
            if last:
                return Walk(tuple(visits), Stop.UNAVAILABLE, total, result.reason)
            continue
        total = _add(total, result.cost)
        stop = _stop(step, result.confidence, last, capped=cost_cap_usd is not None and total >= cost_cap_usd)
        visit = Visit(index, step, result, last, total, stop)
        visits.append(visit)
        if on_visit is not None:
            on_visit(visit)
        if stop is not None:
            return Walk(tuple(visits), stop, total)
    raise ValueError("a plan has at least one step")


def reusable(
    step: PlanStep,
    *,
    tier: str,
    confidence: float | None,
    walked_cost: Cost,
    cost: Cost,
    last: bool,
    cost_cap_usd: Cost | None,
) -> bool:
    """Whether a resumed walk (a later attempt of a job whose worker died) may take the answer an earlier
    attempt recorded at `step` — its `tier`, `confidence` and `cost` — instead of asking again: only where
    the rule above would escalate past it again (`walked_cost`: the walk's cost before it), so a recorded
    answer is never the one kept and the walk goes on exactly as the first attempt's would have."""
    if tier != step.tier or confidence is None:
        return False
    capped = cost_cap_usd is not None and _add(walked_cost, cost) >= cost_cap_usd
    return _stop(step, confidence, last, capped=capped) is None


def _add(total: Cost, cost: Cost) -> Cost:
    """One walk's costs come from one source: all Decimal (live, replays of recorded rows) or all float
    (recorded outcomes). Adding one kind to the other would silently round, so it is refused."""
    if isinstance(cost, Decimal) or isinstance(total, Decimal):
        if isinstance(cost, float) or isinstance(total, float):
            raise TypeError("a walk's costs are all Decimal or all float, not both")
        return Decimal(total) + Decimal(cost)
    return total + cost


def _stop(step: PlanStep, confidence: float, last: bool, *, capped: bool) -> Stop | None:
    if last:
        return Stop.FINAL_STEP
    if step.accepts(confidence):
        return Stop.CONFIDENT
    if capped:
        return Stop.COST_CAP
    return None
