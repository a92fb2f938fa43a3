"""Layer 3 of policy validation, the semantics the JSON Schema cannot express: unique ids, cascades
climbing nano < mini < flagship, thresholds only on non-final cascade tiers, known confidence methods,
durations, unreachable rules, and the closed condition language itself (`compiler.compile_when`).
`check_rules` turns schema-valid data into the rules of a policy, or lists every problem found."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routing.decide.confidence import known_methods, schema_problem
from routing.decide.policy.compiler import compile_when
from routing.decide.policy.conditions import Condition
from routing.decide.policy.errors import Path
from routing.decide.policy.fields import SCOPE_APPROVAL, SCOPE_ROUTE
from routing.decide.policy.rules import (
    DEFAULT_CONFIDENCE,
    DEFAULT_ESCALATE_BELOW,
    DEFAULT_EXPIRES_AFTER_S,
    DEFAULT_GROUP,
    MAX_EXPIRES_AFTER_S,
    RUN_LIMITS,
    ApprovalRule,
    BudgetPolicy,
    ConfidenceSpec,
    DeploymentConstraints,
    Limits,
    RouteRule,
    RunLimit,
    RunPolicy,
    ShadowSpec,
    TierDownPolicy,
)
from routing.decide.policy.source import canonical_json
from routing.decide.tiers import tier_rank

_DURATION = re.compile(r"([0-9]+)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | int) -> int:
    """Seconds in `4h`, `30m`, `1h30m`, `2d`, `90s` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text such as 4h")
    if isinstance(value, int):
        seconds = value
    else:
        parts = _DURATION.findall(value)
        if not parts or "".join(number + unit for number, unit in parts) != value:
            raise ValueError(f"invalid duration {value!r}: use e.g. 90s, 30m, 4h, 2d or 1h30m")
        seconds = sum(int(number[:12]) * _SECONDS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    if seconds > MAX_EXPIRES_AFTER_S:
        raise ValueError("a duration may be at most 365 days")
    return seconds


class _Checker:
    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.problems: list[tuple[Path, str]] = []
        defaults = data.get("defaults", {})
        self.default_threshold = float(defaults.get("escalate_below", DEFAULT_ESCALATE_BELOW))
        self.verifier_tier = data.get("verifier", {}).get("tier")
        self.default_confidence = self.confidence(
            defaults.get("confidence", DEFAULT_CONFIDENCE), ("defaults", "confidence")
        )
        self.default_limits = defaults.get("limits", {})

    def problem(self, path: Path, message: str) -> None:
        self.problems.append((path, message))

    def confidence(self, raw: str | Mapping[str, Any] | None, path: Path) -> ConfidenceSpec:
        if raw is None:
            return self.default_confidence
        spec = ConfidenceSpec(raw) if isinstance(raw, str) else ConfidenceSpec(**raw)
        methods = known_methods()
        here = path if isinstance(raw, str) else (*path, "method")
        for name, where in ((spec.method, here), (spec.fallback, (*path, "fallback"))):
            if name is not None and name not in methods:
                self.problem(where, f"unknown confidence method '{name}' (known: {', '.join(methods)})")
        if spec.fallback is not None and spec.fallback == spec.method:
            self.problem((*path, "fallback"), "the fallback must differ from the method")
        used = {spec.method, spec.fallback}
        if "verifier" in used and spec.tier is None and self.verifier_tier is None:
            self.problem(path, "the verifier method needs a judge tier: set 'tier' here or a top-level 'verifier'")
        if "schema" in used:
            if spec.output_schema is None:
                self.problem(path, "the schema method needs an 'output_schema'")
            else:
                message = schema_problem(spec.output_schema)
                if message:
                    self.problem((*path, "output_schema"), message)
        return spec

    def cascade(self, tiers: Sequence[str], path: Path) -> tuple[str, ...]:
        for index in range(1, len(tiers)):
            rank, previous = tier_rank(tiers[index]), tier_rank(tiers[index - 1])  # the schema allows only tiers
            if rank is not None and previous is not None and rank <= previous:
                self.problem(
                    (*path, index),
                    f"the cascade must climb strictly (nano < mini < flagship): "
                    f"'{tiers[index]}' comes after '{tiers[index - 1]}'",
                )
        return tuple(tiers)

    def rule(self, raw: Mapping[str, Any], path: Path) -> RouteRule:
        condition, errors = compile_when(raw.get("when", {}), scope=SCOPE_ROUTE, path=(*path, "when"))
        self.problems.extend((error.path, error.message) for error in errors)
        cascade = self.cascade(raw["cascade"], (*path, "cascade"))
        given = raw.get("escalate_below", {})
        for tier, threshold in given.items():
            where = (*path, "escalate_below", tier)
            if tier not in cascade:
                self.problem(where, f"'{tier}' is not in this rule's cascade [{', '.join(cascade)}]")
            elif tier == cascade[-1]:
                self.problem(
                    where,
                    f"'{tier}' is the cascade's last tier: its answer is final, so it takes no threshold",
                )
            elif not 0 <= threshold <= 1:
                self.problem(where, "a threshold must be between 0 and 1")
        thresholds = {tier: float(given.get(tier, self.default_threshold)) for tier in cascade[:-1]}
        deployments = raw.get("deployments", {})
        region = deployments.get("region", ())
        shadow = raw.get("shadow")
        return RouteRule(
            id=raw["id"],
            description=raw.get("description", ""),
            cascade=cascade,
            escalate_below=thresholds,
            threshold_defaulted=frozenset(tier for tier in cascade[:-1] if tier not in given),
            confidence=self.confidence(raw.get("confidence"), (*path, "confidence")),
            deployments=DeploymentConstraints(
                regions=(region,) if isinstance(region, str) else tuple(region),
                names=tuple(deployments.get("names", ())),
                require=frozenset(deployments.get("require", ())),
            ),
            limits=Limits(**{**self.default_limits, **raw.get("limits", {})}),
            shadow=ShadowSpec(float(shadow["rate"]), shadow["tier"]) if shadow else None,
            condition=condition or Condition(()),
        )

    def approval(self, raw: Mapping[str, Any], path: Path) -> ApprovalRule:
        condition, errors = compile_when(raw["when"], scope=SCOPE_APPROVAL, path=(*path, "when"))
        self.problems.extend((error.path, error.message) for error in errors)
        expires_after_s = DEFAULT_EXPIRES_AFTER_S
        if "expires_after" in raw:
            try:
                expires_after_s = parse_duration(raw["expires_after"])
            except ValueError as error:
                self.problem((*path, "expires_after"), str(error))
        return ApprovalRule(
            id=raw["id"],
            description=raw.get("description", ""),
            approvers=raw.get("approvers", 1),
            group=raw.get("group", DEFAULT_GROUP),
            expires_after_s=expires_after_s,
            on_expiry=raw.get("on_expiry", "reject"),
            condition=condition or Condition(()),
        )

    def unique_ids(self, items: Sequence[Mapping[str, Any]], section: str) -> None:
        first: dict[str, int] = {}
        for index, item in enumerate(items):
            if item["id"] in first:
                self.problem(
                    (section, index, "id"),
                    f"duplicate id '{item['id']}' (also {section}[{first[item['id']]}])",
                )
            first.setdefault(item["id"], index)

    def unreachable(self, rules: Sequence[Mapping[str, Any]]) -> None:
        """A rule after a catch-all, or after a rule with the same conditions, can never be chosen."""
        seen: dict[str, str] = {}
        catch_all = None
        for index, raw in enumerate(rules):
            when = canonical_json(raw.get("when", {}))
            if catch_all is not None:
                self.problem(
                    ("rules", index),
                    f"rule '{raw['id']}' can never match: rule '{catch_all}' above it has no conditions",
                )
            elif when in seen:
                self.problem(
                    ("rules", index),
                    f"rule '{raw['id']}' can never match: rule '{seen[when]}' above it has the same conditions",
                )
            seen.setdefault(when, raw["id"])
            if not raw.get("when"):
                catch_all = catch_all or raw["id"]


@dataclass(frozen=True, slots=True)
class CheckedRules:
    """What layer 3 makes of a document's data: its rules, defaults filled in."""

    rules: tuple[RouteRule, ...]
    approvals: tuple[ApprovalRule, ...]
    budgets: BudgetPolicy
    verifier_tier: str | None
    default_escalate_below: float
    tier_down: TierDownPolicy
    runs: RunPolicy


def check_rules(data: Mapping[str, Any]) -> tuple[CheckedRules | None, list[tuple[Path, str]]]:
    checker = _Checker(data)
    checker.unique_ids(data["rules"], "rules")
    checker.unique_ids(data.get("approvals", []), "approvals")
    checker.unreachable(data["rules"])
    rules = tuple(checker.rule(raw, ("rules", index)) for index, raw in enumerate(data["rules"]))
    approvals = tuple(
        checker.approval(raw, ("approvals", index)) for index, raw in enumerate(data.get("approvals", []))
    )
    budgets = data.get("budgets", {})
    downgrade = checker.cascade(budgets.get("downgrade_cascade", ()), ("budgets", "downgrade_cascade"))
    tier_down = _tier_down(checker, data.get("tier_down", {}))
    if checker.problems:
        return None, checker.problems
    checked = CheckedRules(
        rules=rules,
        approvals=approvals,
        budgets=BudgetPolicy(budgets.get("on_hard_limit", "reject"), downgrade),
        verifier_tier=checker.verifier_tier,
        default_escalate_below=checker.default_threshold,
        tier_down=tier_down,
        runs=_runs(data.get("runs", {})),
    )
    return checked, []


def _runs(raw: Mapping[str, Any]) -> RunPolicy:
    """The schema has checked every limit's shape; the order of `RUN_LIMITS` is the order they are judged."""
    limits = [
        RunLimit(name, raw[name]["limit"], raw[name].get("on_limit", "hold")) for name in RUN_LIMITS if name in raw
    ]
    return RunPolicy(tuple(limits))


def _tier_down(checker: _Checker, raw: Mapping[str, Any]) -> TierDownPolicy:
    action = raw.get("action", "fail")
    if "wait_up_to" not in raw:
        return TierDownPolicy(action)
    if action == "fail":
        checker.problem(("tier_down", "wait_up_to"), "wait_up_to applies only to action: hold or wait")
        return TierDownPolicy(action)
    try:
        return TierDownPolicy(action, parse_duration(raw["wait_up_to"]))
    except ValueError as invalid:
        checker.problem(("tier_down", "wait_up_to"), str(invalid))
        return TierDownPolicy(action)
