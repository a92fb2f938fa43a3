"""The router: a pure, total function of (job facts, policy document, catalog) to a plan.

`route()` never raises. The first rule whose conditions hold governs the job — if that rule cannot be
served (every tier of its cascade removed by the job's tier constraints, or left without a usable
deployment), the result is an error naming why, and later rules are *not* tried: falling through would
let a catalog outage silently move, say, EU personal data onto a rule without the EU constraint.

Within the governing rule:
- `constraints.min_tier` / `max_tier` drop cascade tiers outside them;
- a deployment is skipped when it is disabled, in the wrong region, not in the rule's `names`, lacks a
  capability the rule requires (or `tools` when the job offers tools, or the confidence method's own,
  e.g. `logprobs`, unless the rule declares a fallback method), has an observed p95 latency over the
  job's latency budget, or an estimated call cost over the job's cost cap;
- a tier left without deployments is dropped; the last remaining step takes no threshold (its answer is
  final), every other step escalates strictly below its threshold (`PlanStep.accepts`).

Deciding costs a few microseconds whatever the number of rules (see `RuleMatcher`); the reasons why each
earlier rule did not match are worked out only when the explanation is read, and are exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from routing.decide.confidence import REQUIRED_CAPABILITY
from routing.decide.policy.document import PolicyDocument
from routing.decide.policy.errors import PolicyError, format_path
from routing.decide.policy.rules import DeploymentConstraints, Limits, RouteRule
from routing.decide.policy.values import MISSING, constraint_value, normalize, show, tool_names
from routing.decide.runs import RunFacts, downgraded_cascade
from routing.decide.tiers import tier_rank

FIRST_MATCH_GOVERNS = "the first matching rule governs; later rules are not tried"


@dataclass(frozen=True, slots=True)
class Constraints:
    latency_budget_ms: int | None = None
    cost_cap_usd: float | None = None
    min_tier: str | None = None
    max_tier: str | None = None


@dataclass(frozen=True, slots=True)
class JobFacts:
    task_type: str
    input_tokens: int = 0
    complexity: float | None = None
    application: str = ""
    labels: Mapping[str, str | bool | int | float] = field(default_factory=dict)
    constraints: Constraints = Constraints()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    budget_hard_limit_reached: bool = False
    detected: tuple[str, ...] = ()  # kinds of personal data found in the prompt (email, iban, ...)
    run: RunFacts | None = None  # the run the job belongs to, as it stood before the job joined it
    run_downgrade: bool = False  # a run limit says: no flagship for this call (routing.decide.runs)


@dataclass(frozen=True, slots=True)
class DeploymentInfo:
    name: str
    tier: str
    region: str | None = None
    capabilities: frozenset[str] = frozenset()
    enabled: bool = True
    p95_latency_ms: float | None = None
    input_price_per_mtok: float = 0.0
    output_price_per_mtok: float = 0.0


@dataclass(frozen=True, slots=True)
class PlanStep:
    tier: str
    deployments: tuple[str, ...]  # primary first, then same-tier fallbacks
    escalate_below: float | None  # None on the last step: its answer is final
    confidence_method: str
    confidence_fallback: str | None = None  # use when the method is not applicable to an answer
    confidence_fallback_reason: str | None = None  # set when the route itself switched to the fallback

    def accepts(self, confidence: float) -> bool:
        """Strictly below the threshold escalates; equal is accepted."""
        return self.escalate_below is None or confidence >= self.escalate_below

    def to_record(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "deployments": list(self.deployments),
            "escalate_below": self.escalate_below,
            "confidence_method": self.confidence_method,
            "confidence_fallback": self.confidence_fallback,
            "confidence_fallback_reason": self.confidence_fallback_reason,
        }


@dataclass(frozen=True, slots=True)
class ShadowPlan:
    rate: float
    tier: str
    deployments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VerifierPlan:
    tier: str
    deployments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    rule_id: str
    steps: tuple[PlanStep, ...]
    limits: Limits
    shadow: ShadowPlan | None
    verifier: VerifierPlan | None
    policy_sha256: str
    downgraded: bool = False  # the budget's hard limit or a run limit replaced the cascade
    output_schema: Mapping[str, Any] | bool | None = field(default=None, compare=False, repr=False)

    def to_record(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "policy_sha256": self.policy_sha256,
            "steps": [step.to_record() for step in self.steps],
            "limits": self.limits.to_record(),
            "shadow": None
            if self.shadow is None
            else {
                "rate": self.shadow.rate,
                "tier": self.shadow.tier,
                "deployments": list(self.shadow.deployments),
            },
            "verifier": None
            if self.verifier is None
            else {"tier": self.verifier.tier, "deployments": list(self.verifier.deployments)},
            "downgraded": self.downgraded,
        }


@dataclass(frozen=True, slots=True)
class RuleCheck:
    rule_id: str
    matched: bool
    reason: str


@dataclass(frozen=True, slots=True)
class SkippedDeployment:
    name: str
    tier: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TierRemoval:
    tier: str
    reason: str


class Explanation:
    """Why this plan: the rules checked in order (with the reason each earlier one failed), the tiers
    removed and the deployments skipped. Rule reasons are computed on first read."""

    __slots__ = (
        "_checks",
        "_document",
        "_facts",
        "_position",
        "deployments_skipped",
        "notes",
        "tiers_removed",
    )

    def __init__(
        self,
        document: PolicyDocument,
        facts: JobFacts,
        position: int | None,
        tiers_removed: Sequence[TierRemoval] = (),
        deployments_skipped: Sequence[SkippedDeployment] = (),
        notes: Sequence[str] = (),
    ) -> None:
        self._document, self._facts, self._position = document, facts, position
        self._checks: tuple[RuleCheck, ...] | None = None
        self.tiers_removed = tuple(tiers_removed)
        self.deployments_skipped = tuple(deployments_skipped)
        self.notes = tuple(notes)

    @property
    def policy_sha256(self) -> str:
        return self._document.sha256

    @property
    def matched_rule(self) -> str | None:
        return None if self._position is None else self._document.rules[self._position].id

    @property
    def rules_checked(self) -> tuple[RuleCheck, ...]:
        if self._checks is None:
            rules = self._document.rules
            last = len(rules) if self._position is None else self._position + 1
            checks = []
            for rule in rules[:last]:
                held, reason = rule.condition.explain(self._facts)
                checks.append(RuleCheck(rule.id, held, reason))
            self._checks = tuple(checks)
        return self._checks

    def to_record(self) -> dict[str, Any]:
        return {
            "policy_sha256": self.policy_sha256,
            "matched_rule": self.matched_rule,
            "rules_checked": [
                {"rule": check.rule_id, "matched": check.matched, "reason": check.reason}
                for check in self.rules_checked
            ],
            "first_match_governs": FIRST_MATCH_GOVERNS,
            "tiers_removed": [
                {"tier": removal.tier, "reason": removal.reason} for removal in self.tiers_removed
            ],
            "deployments_skipped": [
                {"deployment": skipped.name, "tier": skipped.tier, "reasons": list(skipped.reasons)}
                for skipped in self.deployments_skipped
            ],
            "notes": list(self.notes),
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Explanation) and other.to_record() == self.to_record()

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class RouteResult:
    plan: Plan | None
    error: str | None
    explanation: Explanation

    @property
    def ok(self) -> bool:
        return self.plan is not None

    def to_record(self) -> dict[str, Any]:
        """JSON-serialisable, for the ledger."""
        return {
            "plan": None if self.plan is None else self.plan.to_record(),
            "error": self.error,
            "explanation": self.explanation.to_record(),
        }


# ---------------------------------------------------------------- routing


def route(facts: JobFacts, document: PolicyDocument, catalog: Sequence[DeploymentInfo]) -> RouteResult:
    position = document.matcher.first_match(facts)
    if position is None:
        count = len(document.rules)
        message = f"no rule matched ({count} rule{'s' if count != 1 else ''} checked)"
        return RouteResult(None, message, Explanation(document, facts, None))
    return _Planner(facts, document, catalog, position).plan()


def _finite_number(value: object) -> float | None:
    """A number from a fact or a catalog entry, or None when it is absent or not a (non-NaN) number."""
    kind = type(value)
    if kind is not float and kind is not int:
        value = normalize(value)
        kind = type(value)
        if kind is not float and kind is not int:
            return None
    if kind is int:
        if abs(value) < 10**300:  # type: ignore[arg-type]
            return float(value)  # type: ignore[arg-type]
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]
    return None if value != value else value  # type: ignore[return-value]


def _usd(value: float) -> str:
    return f"${value:.6g}"


class _Planner:
    def __init__(
        self, facts: JobFacts, document: PolicyDocument, catalog: Sequence[DeploymentInfo], position: int
    ) -> None:
        self.facts, self.document, self.catalog, self.position = facts, document, catalog, position
        self.rule: RouteRule = document.rules[position]
        self.tiers_removed: list[TierRemoval] = []
        self.skipped: list[SkippedDeployment] = []
        self.notes: list[str] = []
        constraints = getattr(facts, "constraints", None)
        self.latency_budget = _finite_number(constraint_value(constraints, "latency_budget_ms"))
        self.cost_cap = _finite_number(constraint_value(constraints, "cost_cap_usd"))
        self.input_tokens = max(_finite_number(getattr(facts, "input_tokens", 0)) or 0.0, 0.0)
        self.needs_tools = bool(tool_names(getattr(facts, "tools", ())))
        self.constraints = constraints
        capability = REQUIRED_CAPABILITY.get(self.rule.confidence.method)
        # Without a fallback, a deployment that cannot support the method cannot serve the rule at all.
        self.strict_capability = capability if self.rule.confidence.fallback is None else None

    def fail(self, message: str) -> RouteResult:
        return RouteResult(None, message, self.explanation())

    def explanation(self) -> Explanation:
        return Explanation(
            self.document, self.facts, self.position, self.tiers_removed, self.skipped, self.notes
        )

    def plan(self) -> RouteResult:
        rule = self.rule
        cascade, downgraded = rule.cascade, False
        if getattr(self.facts, "budget_hard_limit_reached", False) is True:
            budgets = self.document.budgets
            if budgets.on_hard_limit == "reject":
                return self.fail(
                    "the application's budget hard limit is reached and the policy rejects new work"
                )
            cascade, downgraded = budgets.downgrade_cascade or rule.cascade[:1], True
            self.notes.append(f"budget hard limit reached: cascade downgraded to [{', '.join(cascade)}]")
        if getattr(self.facts, "run_downgrade", False) is True:
            cascade, downgraded = downgraded_cascade(tuple(cascade)), True
            self.notes.append(f"a run limit was reached: cascade downgraded to [{', '.join(cascade)}]")
        tiers = self.within_tier_constraints(cascade)
        if not tiers:
            return self.fail(
                f"rule '{rule.id}' matched, but no tier of its cascade [{', '.join(cascade)}] is within the "
                f"job's tier constraints; {FIRST_MATCH_GOVERNS}"
            )
        served = []
        for tier in tiers:
            deployments = self.usable(
                tier, rule.deployments, strict_capability=self.strict_capability, serving=True
            )
            if deployments:
                served.append((tier, deployments))
            else:
                self.tiers_removed.append(TierRemoval(tier, "no usable deployment"))
        if not served:
            return self.fail(
                f"rule '{rule.id}' matched, but no deployment can serve any tier of its cascade "
                f"[{', '.join(tiers)}]; {FIRST_MATCH_GOVERNS}"
            )
        last = len(served) - 1
        steps = [
            self.step(tier, deployments, index == last) for index, (tier, deployments) in enumerate(served)
        ]
        verifier = self.verifier()
        if (
            any("verifier" in (s.confidence_method, s.confidence_fallback) for s in steps)
            and verifier is None
        ):
            return self.fail(f"rule '{rule.id}' uses the verifier method but no judge deployment is usable")
        plan = Plan(
            rule_id=rule.id,
            steps=tuple(steps),
            limits=rule.limits,
            shadow=self.shadow(),
            verifier=verifier,
            policy_sha256=self.document.sha256,
            downgraded=downgraded,
            output_schema=rule.confidence.output_schema,
        )
        return RouteResult(plan, None, self.explanation())

    def within_tier_constraints(self, cascade: Sequence[str]) -> list[str]:
        bounds: dict[str, tuple[int, str]] = {}
        for name in ("min_tier", "max_tier"):
            value = normalize(constraint_value(self.constraints, name))
            if value is MISSING:
                continue
            rank = tier_rank(value)
            if rank is None:
                self.notes.append(f"constraint {name} {show(value)} is not a known tier and was ignored")
            else:
                bounds[name] = (rank, str(value))
        kept = []
        for tier in cascade:
            rank = tier_rank(tier)
            if "min_tier" in bounds and rank < bounds["min_tier"][0]:  # type: ignore[operator]
                self.tiers_removed.append(
                    TierRemoval(tier, f"below the job's min_tier {bounds['min_tier'][1]}")
                )
            elif "max_tier" in bounds and rank > bounds["max_tier"][0]:  # type: ignore[operator]
                self.tiers_removed.append(
                    TierRemoval(tier, f"above the job's max_tier {bounds['max_tier'][1]}")
                )
            else:
                kept.append(tier)
        return kept

    def step(self, tier: str, deployments: Sequence[DeploymentInfo], last: bool) -> PlanStep:
        rule = self.rule
        confidence = rule.confidence
        method, fallback, reason = confidence.method, confidence.fallback, None
        capability = REQUIRED_CAPABILITY.get(method)
        if capability and fallback and not any(capability in (d.capabilities or ()) for d in deployments):
            method, fallback = fallback, None
            reason = f"no usable {tier} deployment returns {capability}, which {confidence.method} needs"
        threshold = None
        if not last:
            threshold = rule.escalate_below.get(tier, self.document.default_escalate_below)
        elif tier in rule.escalate_below:
            self.notes.append(
                f"{tier} is the last usable tier: its answer is final, so its threshold "
                f"{show(rule.escalate_below[tier])} does not apply"
            )
        names = tuple(deployment.name for deployment in deployments)
        return PlanStep(tier, names, threshold, method, fallback, reason)

    def usable(
        self, tier: str, constraints: DeploymentConstraints, *, strict_capability: str | None, serving: bool
    ) -> list[DeploymentInfo]:
        """The deployments of `tier` that may serve, in preference order; records why the rest may not."""
        candidates = [deployment for deployment in self.catalog if deployment.tier == tier]
        if constraints.names:
            order = {name: index for index, name in enumerate(constraints.names)}
            candidates.sort(key=lambda deployment: order.get(deployment.name, len(order)))
        usable = []
        for deployment in candidates:
            reasons = _admission_problems(deployment, constraints)
            if serving:
                reasons += self.serving_problems(deployment, strict_capability)
            if reasons:
                if serving:
                    self.skipped.append(SkippedDeployment(deployment.name, tier, tuple(reasons)))
            else:
                usable.append(deployment)
        return usable

    def serving_problems(self, deployment: DeploymentInfo, strict_capability: str | None) -> list[str]:
        reasons = []
        capabilities = deployment.capabilities or frozenset()
        if self.needs_tools and "tools" not in capabilities and "tools" not in self.rule.deployments.require:
            reasons.append("lacks capability tools (the job offers tools)")
        if strict_capability and strict_capability not in capabilities:
            reasons.append(
                f"lacks capability {strict_capability} "
                f"(confidence method {self.rule.confidence.method} has no fallback)"
            )
        p95 = _finite_number(deployment.p95_latency_ms)
        if self.latency_budget is not None and p95 is not None and p95 > self.latency_budget:
            reasons.append(
                f"p95 latency {show(p95)} ms over the job's latency budget {show(self.latency_budget)} ms"
            )
        if self.cost_cap is not None:
            output_tokens = self.rule.limits.max_output_tokens or 0
            input_price = _finite_number(deployment.input_price_per_mtok) or 0.0
            output_price = _finite_number(deployment.output_price_per_mtok) or 0.0
            estimate = (self.input_tokens * input_price + output_tokens * output_price) / 1e6
            if estimate > self.cost_cap:
                reasons.append(
                    f"estimated cost {_usd(estimate)} ({show(self.input_tokens)} input tokens, up to "
                    f"{show(output_tokens)} output) over the job's cost cap {_usd(self.cost_cap)}"
                )
        return reasons

    def shadow(self) -> ShadowPlan | None:
        spec = self.rule.shadow
        if spec is None:
            return None
        deployments = self.usable(spec.tier, self.rule.deployments, strict_capability=None, serving=False)
        if not deployments:
            self.notes.append(f"shadow sampling off: no usable {spec.tier} deployment")
            return None
        return ShadowPlan(spec.rate, spec.tier, tuple(deployment.name for deployment in deployments))

    def verifier(self) -> VerifierPlan | None:
        confidence = self.rule.confidence
        if "verifier" not in (confidence.method, confidence.fallback):
            return None
        tier = confidence.tier or self.document.verifier_tier
        if tier is None:
            return None
        # The judge reads the job's content, so the rule's region constraint binds it too.
        judge_constraints = DeploymentConstraints(regions=self.rule.deployments.regions)
        deployments = self.usable(tier, judge_constraints, strict_capability=None, serving=False)
        return VerifierPlan(tier, tuple(d.name for d in deployments)) if deployments else None


def _admission_problems(deployment: DeploymentInfo, constraints: DeploymentConstraints) -> list[str]:
    """Why a deployment may not serve a rule whatever the job: the catalog and the rule's constraints."""
    reasons = []
    if deployment.enabled is not True:
        reasons.append("disabled")
    if constraints.regions and deployment.region not in constraints.regions:
        reasons.append(
            f"region {show(normalize(deployment.region))} not in [{', '.join(constraints.regions)}]"
        )
    if constraints.names and deployment.name not in constraints.names:
        reasons.append(f"not in the rule's deployments [{', '.join(constraints.names)}]")
    missing = sorted(constraints.require - frozenset(deployment.capabilities or ()))
    if missing:
        reasons.append(f"lacks capability {', '.join(missing)} (required by the rule)")
    return reasons


# ---------------------------------------------------------------- validation against the catalog


def validate_against_catalog(
    document: PolicyDocument, deployments: Sequence[DeploymentInfo]
) -> list[PolicyError]:
    """What the catalog cannot serve: a cascade tier without an enabled deployment that meets the rule's
    constraints; a deployment lacking the capability the rule's confidence method needs when the rule
    declares no fallback; a judge or shadow tier without a deployment; an unservable downgrade cascade."""
    problems: list[tuple[tuple[str | int, ...], str]] = []

    def usable(tier: str, constraints: DeploymentConstraints) -> list[DeploymentInfo]:
        return [d for d in deployments if d.tier == tier and not _admission_problems(d, constraints)]

    for index, rule in enumerate(document.rules):
        path = ("rules", index)
        confidence = rule.confidence
        capability = REQUIRED_CAPABILITY.get(confidence.method)
        for position, tier in enumerate(rule.cascade):
            serving = usable(tier, rule.deployments)
            if not serving:
                problems.append(
                    (
                        (*path, "cascade", position),
                        f"no enabled {tier} deployment meets the rule's deployment constraints "
                        f"({rule.deployments.describe()})",
                    )
                )
            for deployment in serving:
                if capability and confidence.fallback is None and capability not in deployment.capabilities:
                    problems.append(
                        (
                            (*path, "confidence"),
                            f"deployment '{deployment.name}' ({tier}) does not return {capability}, which "
                            f"confidence method '{confidence.method}' needs; declare a fallback method "
                            f"(confidence: {{method: {confidence.method}, fallback: self_report}}) "
                            "or constrain the rule's deployments",
                        )
                    )
        judge = confidence.tier or document.verifier_tier
        uses_verifier = "verifier" in (confidence.method, confidence.fallback) and judge is not None
        if uses_verifier and not usable(judge, DeploymentConstraints(regions=rule.deployments.regions)):  # type: ignore[arg-type]
            problems.append(((*path, "confidence"), f"no enabled {judge} deployment can act as the verifier"))
        if rule.shadow is not None and not usable(rule.shadow.tier, rule.deployments):
            problems.append(
                ((*path, "shadow", "tier"), f"no enabled {rule.shadow.tier} deployment for shadow calls")
            )
    for position, tier in enumerate(document.budgets.downgrade_cascade):
        if not usable(tier, DeploymentConstraints()):
            problems.append((("budgets", "downgrade_cascade", position), f"no enabled {tier} deployment"))
    return [PolicyError(format_path(path), message, document.line_of(path)) for path, message in problems]
