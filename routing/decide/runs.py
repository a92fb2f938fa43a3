"""What a run's limits (a policy's `runs:` section) decide for the call being routed. Pure: the runtime
(routing.execute.runs) reads the run's facts under a lock on the run and records what this returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from routing.decide.policy.rules import RunPolicy

# Where limits disagree a refusal wins; a downgrade and a hold can both apply to one call.
FLAGSHIP_LIMITS = ("max_flagship_calls", "max_flagship_share")


@dataclass(frozen=True, slots=True)
class RunFacts:
    """A run as it stands before the call being routed joins it."""

    calls: int = 0
    flagship_calls: int = 0
    cost_usd: float = 0.0
    role: str = ""


@dataclass(frozen=True, slots=True)
class LimitReached:
    limit: str
    value: float
    observed: float
    action: str

    def reason(self) -> str:
        return f"the run reached its {self.limit} limit ({self.observed:g} of {self.value:g}): {self.action}"

    def to_record(self) -> dict[str, Any]:
        return {"limit": self.limit, "value": self.value, "observed": self.observed, "action": self.action}


def observed_against_limits(run: RunFacts) -> dict[str, float]:
    """What the run has of each limit (`RUN_LIMITS`), as its limits are judged (and shown on its page)."""
    return {
        "max_calls": run.calls,
        "max_flagship_calls": run.flagship_calls,
        # Of the calls so far; a run's first call has no share yet, so a planner always gets its first.
        "max_flagship_share": run.flagship_calls / run.calls if run.calls else 0.0,
        "max_cost_usd": run.cost_usd,
    }


def limits_reached(policy: RunPolicy, run: RunFacts, *, wants_flagship: bool) -> tuple[LimitReached, ...]:
    """The limits this call would go past. `wants_flagship`: the call's plan, as routed without the run's
    limits, could reach the flagship tier (only then does the flagship limit apply to it)."""
    observed = observed_against_limits(run)
    reached = []
    for limit in policy.limits:
        if limit.name in FLAGSHIP_LIMITS and not wants_flagship:
            continue
        if limit.name == "max_flagship_share" and not run.calls:
            continue
        if observed[limit.name] >= limit.limit:
            reached.append(LimitReached(limit.name, limit.limit, observed[limit.name], limit.on_limit))
    return tuple(reached)


def actions(reached: tuple[LimitReached, ...]) -> frozenset[str]:
    return frozenset(limit.action for limit in reached)


def downgraded_cascade(cascade: tuple[str, ...]) -> tuple[str, ...]:
    """A run's downgrade: the cascade without its flagship tier, or the mini tier alone when the cascade
    had nothing else."""
    return tuple(tier for tier in cascade if tier != "flagship") or ("mini",)
