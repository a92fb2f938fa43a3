"""Policy documents: YAML or JSON text in, a validated, immutable `PolicyDocument` out.

Validation runs in three layers and reports every problem it finds as a `PolicyError` (`errors`: a JSON
path such as `rules[2].escalate_below.nano`, a message, and the source line when known):
1. the source (`source`): at most 256 KiB, one document, JSON-representable only;
2. the published JSON Schema (`schema`, over `schema.json`, draft 2020-12);
3. semantic checks the schema cannot express (`semantics`): unique ids, cascades climbing nano < mini <
   flagship, thresholds only on non-final cascade tiers, known confidence methods, durations,
   unreachable rules, and the closed condition language itself (`compiler`, `conditions`).

A document's identity is the SHA-256 of its canonical JSON (sorted keys, no whitespace, UTF-8), the same
canonical form the ledger hashes; the same policy written as YAML or JSON has the same hash. Its route
rules are indexed once, by `matcher.RuleMatcher`, when it is built here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from routing.decide.policy.errors import InvalidPolicy, Path, PolicyError, format_path, line_at, policy_errors
from routing.decide.policy.matcher import RuleMatcher
from routing.decide.policy.rules import (
    APPROVAL_GROUPS,
    ApprovalRule,
    BudgetPolicy,
    RouteRule,
    RunPolicy,
    TierDownPolicy,
)
from routing.decide.policy.schema import schema_problems
from routing.decide.policy.semantics import check_rules
from routing.decide.policy.source import canonical_json, json_problems, parse_source


@dataclass(frozen=True, slots=True, eq=False)
class PolicyDocument:
    """A validated policy. Equal documents are those with equal canonical JSON."""

    version: int
    rules: tuple[RouteRule, ...]
    approvals: tuple[ApprovalRule, ...]
    blocked_tools: frozenset[str]
    budgets: BudgetPolicy
    verifier_tier: str | None
    complexity_method: str
    complexity_tier: str
    default_escalate_below: float
    sha256: str
    _canonical: str = field(repr=False)
    matcher: RuleMatcher = field(repr=False)
    source_lines: Mapping[Path, int] = field(default_factory=dict, repr=False)
    # Whether any rule reads `detected`: only then do the personal-data detectors run on a job's prompt.
    detects_personal_data: bool = False
    tier_down: TierDownPolicy = field(default_factory=TierDownPolicy)
    runs: RunPolicy = field(default_factory=RunPolicy)

    def line_of(self, path: Path) -> int | None:
        """The source line of a JSON path, when the document was loaded from text."""
        return line_at(self.source_lines, path)

    def canonical_json(self) -> str:
        """Sorted keys, no whitespace, non-ASCII kept; hash its UTF-8 bytes to get `sha256`."""
        return self._canonical

    def as_data(self) -> dict[str, Any]:
        """A fresh copy of the document as parsed JSON data."""
        return json.loads(self._canonical)

    def rule(self, rule_id: str) -> RouteRule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PolicyDocument) and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)


# ---------------------------------------------------------------- entry points


def load_policy(text: str | bytes) -> PolicyDocument:
    """Parse and validate YAML or JSON text. Raises `InvalidPolicy` listing every error found."""
    data, lines, errors = parse_source(text)
    if errors:
        raise InvalidPolicy(errors)
    document = _validated(data, lines)
    problems = _approval_group_problems(document)
    if problems:
        raise InvalidPolicy(policy_errors(problems, lines))
    return document


def _approval_group_problems(document: PolicyDocument) -> list[tuple[Path, str]]:
    """Written documents may name only groups that can decide. Checked on text (every new version and the
    editor's check), not on stored versions: one written before the rule still loads, and its holds are
    then decided by nobody (review.services), never by a fallback group."""
    return [
        (
            ("approvals", index, "group"),
            f"unknown approval group {rule.group!r}: an approval rule's group must be one of "
            f"{', '.join(APPROVAL_GROUPS)}",
        )
        for index, rule in enumerate(document.approvals)
        if rule.group not in APPROVAL_GROUPS
    ]


def policy_from_data(data: object) -> PolicyDocument:
    """Validate already-parsed data (e.g. a stored version's JSON). Raises `InvalidPolicy`."""
    errors = json_problems(data, ())
    if errors:
        raise InvalidPolicy([PolicyError(format_path(path), message) for path, message in errors])
    return _validated(data, {})


def check_policy(text: str | bytes) -> list[PolicyError]:
    """Every error in `text`; empty when it is a valid policy."""
    try:
        load_policy(text)
    except InvalidPolicy as invalid:
        return list(invalid.errors)
    return []


def _validated(data: Any, lines: Mapping[Path, int]) -> PolicyDocument:
    problems = schema_problems(data)
    checked = None
    if not problems:
        checked, problems = check_rules(data)
    if problems:
        raise InvalidPolicy(policy_errors(problems, lines))
    assert checked is not None
    canonical = canonical_json(data)
    rules, approvals = checked.rules, checked.approvals
    conditions = [rule.condition for rule in rules] + [rule.condition for rule in approvals]
    return PolicyDocument(
        version=data.get("version", 1),
        rules=rules,
        approvals=approvals,
        blocked_tools=frozenset(data.get("blocked_tools", ())),
        budgets=checked.budgets,
        verifier_tier=checked.verifier_tier,
        complexity_method=data.get("complexity", {}).get("method", "heuristic"),
        complexity_tier=data.get("complexity", {}).get("tier", "nano"),
        default_escalate_below=checked.default_escalate_below,
        sha256=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        _canonical=canonical,
        matcher=RuleMatcher([rule.condition for rule in rules]),
        source_lines=dict(lines),
        detects_personal_data=any("detected" in condition.fields() for condition in conditions),
        tier_down=checked.tier_down,
        runs=checked.runs,
    )
