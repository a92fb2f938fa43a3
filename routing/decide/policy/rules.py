"""The rules of a validated policy: route rules (which cascade, which thresholds, how confidence is
scored, which deployments), approval rules (who must decide, by when), budgets — and their defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from routing.decide.policy.conditions import Condition

DEFAULT_ESCALATE_BELOW = 0.7
DEFAULT_CONFIDENCE: Mapping[str, str] = {"method": "logprob", "fallback": "self_report"}
DEFAULT_GROUP = "reviewer"
# The roles (controlplane.roles.Role) that may decide an approval. Auditors read, they never decide; and a
# group Arbiter has no role for would leave nobody (or, worse, somebody unintended) eligible.
APPROVAL_GROUPS = ("reviewer", "policy_admin")
DEFAULT_EXPIRES_AFTER_S = 24 * 3600
MAX_EXPIRES_AFTER_S = 365 * 24 * 3600


@dataclass(frozen=True, slots=True)
class ConfidenceSpec:
    method: str
    fallback: str | None = None
    tier: str | None = None  # judge tier for `verifier`; the document's `verifier.tier` otherwise
    output_schema: Mapping[str, Any] | bool | None = None  # for `schema`


@dataclass(frozen=True, slots=True)
class DeploymentConstraints:
    regions: tuple[str, ...] = ()  # empty: any region
    names: tuple[str, ...] = ()  # empty: any deployment; else allowed names, in order of preference
    require: frozenset[str] = frozenset()  # capabilities every deployment must have

    def describe(self) -> str:
        parts = []
        if self.regions:
            parts.append(f"region {', '.join(self.regions)}")
        if self.names:
            parts.append(f"names {', '.join(self.names)}")
        if self.require:
            parts.append(f"capabilities {', '.join(sorted(self.require))}")
        return "; ".join(parts) or "none"


@dataclass(frozen=True, slots=True)
class Limits:
    max_output_tokens: int | None = None
    timeout_s: float | None = None

    def to_record(self) -> dict[str, Any]:
        return {"max_output_tokens": self.max_output_tokens, "timeout_s": self.timeout_s}


@dataclass(frozen=True, slots=True)
class ShadowSpec:
    rate: float
    tier: str


@dataclass(frozen=True, slots=True)
class RouteRule:
    id: str
    description: str
    cascade: tuple[str, ...]
    escalate_below: Mapping[str, float]  # every non-final cascade tier, defaults filled in
    threshold_defaulted: frozenset[str]  # tiers whose threshold came from the document default
    confidence: ConfidenceSpec
    deployments: DeploymentConstraints
    limits: Limits
    shadow: ShadowSpec | None
    condition: Condition = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ApprovalRule:
    id: str
    description: str
    approvers: int
    group: str
    expires_after_s: int
    on_expiry: str
    condition: Condition = field(compare=False, repr=False)


DEFAULT_TIER_DOWN_WAIT_S = 600


@dataclass(frozen=True, slots=True)
class TierDownPolicy:
    """When the last tier a job can use is down: `fail` now; `hold` it for a person (approve: try again;
    reject, or nobody within `wait_up_to_s`: rejected); or `wait` for its breakers' cooldown and try again
    until `wait_up_to_s` after the job started."""

    action: str = "fail"
    wait_up_to_s: int = DEFAULT_TIER_DOWN_WAIT_S


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    on_hard_limit: str = "reject"
    downgrade_cascade: tuple[str, ...] = ()


RUN_LIMITS = ("max_calls", "max_flagship_calls", "max_flagship_share", "max_cost_usd")
RUN_ACTIONS = ("downgrade", "hold", "refuse")


@dataclass(frozen=True, slots=True)
class RunLimit:
    """One of a run's limits (`RUN_LIMITS`): reached when the run already has `limit` of it; then
    `on_limit` (`RUN_ACTIONS`) applies to the call being routed."""

    name: str
    limit: float
    on_limit: str = "hold"


@dataclass(frozen=True, slots=True)
class RunPolicy:
    limits: tuple[RunLimit, ...] = ()
