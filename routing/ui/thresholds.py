"""Escalation thresholds as a form: read every (rule, tier) threshold of a version, write a new
document with the changed ones. The new document is the parsed source with only those values set,
serialised back to YAML; it becomes a new draft version whose parent is the version it came from."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from routing.models import PolicyVersion
from routing.policy.document import load_policy, parse_source


class ThresholdRewriteError(ValueError):
    pass


@dataclass(frozen=True)
class Threshold:
    rule_index: int
    rule_id: str
    tier: str
    value: float
    defaulted: bool  # the rule gives none for this tier; the document's default applies

    @property
    def name(self) -> str:
        return f"t-{self.rule_index}-{self.tier}"


def thresholds_of(version: PolicyVersion) -> list[Threshold]:
    document = load_policy(version.source)
    return [
        Threshold(index, rule.id, tier, rule.escalate_below[tier], tier in rule.threshold_defaulted)
        for index, rule in enumerate(document.rules)
        for tier in rule.cascade[:-1]
    ]


def rewrite_thresholds(version: PolicyVersion, changes: dict[tuple[int, str], float]) -> str:
    """The version's source with `changes` ((rule index, tier) -> threshold) written in, as YAML."""
    data, _, errors = parse_source(version.source)
    if errors:
        raise ThresholdRewriteError("the version's source no longer parses: " + "; ".join(map(str, errors)))
    for (index, tier), value in changes.items():
        data["rules"][index].setdefault("escalate_below", {})[tier] = value
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100)
    # PyYAML writes YAML 1.1; the policy loader reads the 1.2 core schema. Make sure nothing changed
    # meaning on the way (a string that 1.2 would read as a number, say) before anyone sees the draft.
    reread, _, errors = parse_source(text)
    if errors or reread != data:
        raise ThresholdRewriteError("the rewritten document does not read back the same; edit the YAML instead")
    header = f"# Thresholds changed from {version.policy.name} v{version.number} in the web UI.\n"
    return header + text
