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


class _PolicyDumper(yaml.SafeDumper):
    """YAML the way policies are written by hand: sections and list items as blocks, sequences
    indented under their key, and a rule's values on one line (`escalate_below: {nano: 0.8}`), so
    that a diff against the version it came from shows the change rather than a reformatting."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)


class _FlowDict(dict):
    pass


class _FlowList(list):
    pass


_PolicyDumper.add_representer(
    _FlowDict, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
)
_PolicyDumper.add_representer(
    _FlowList, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)
_PolicyDumper.add_representer(
    dict, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=False)
)
_PolicyDumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=False)
)
_ONE_LINE = 100


def _styled(value: object, depth: int = 0) -> object:
    """Mark what goes on one line: anything inside a rule (depth 3: document, section, rule, value)
    and lists of plain values, when short enough."""
    if isinstance(value, dict):
        items = {key: _styled(item, depth + 1) for key, item in value.items()}
        return _FlowDict(items) if depth >= 3 and len(repr(value)) <= _ONE_LINE else items
    if isinstance(value, list):
        items = [_styled(item, depth + 1) for item in value]
        plain = all(not isinstance(item, dict | list) for item in value)
        return _FlowList(items) if (depth >= 3 or plain) and len(repr(value)) <= _ONE_LINE else items
    return value


def rewrite_thresholds(version: PolicyVersion, changes: dict[tuple[int, str], float]) -> str:
    """The version's source with `changes` ((rule index, tier) -> threshold) written in, as YAML."""
    data, _, errors = parse_source(version.source)
    if errors:
        raise ThresholdRewriteError("the version's source no longer parses: " + "; ".join(map(str, errors)))
    for (index, tier), value in changes.items():
        data["rules"][index].setdefault("escalate_below", {})[tier] = value
    text = yaml.dump(_styled(data), Dumper=_PolicyDumper, sort_keys=False, allow_unicode=True, width=120)
    # PyYAML writes YAML 1.1; the policy loader reads the 1.2 core schema. Make sure nothing changed
    # meaning on the way (a string that 1.2 would read as a number, say) before anyone sees the draft.
    reread, _, errors = parse_source(text)
    if errors or reread != data:
        raise ThresholdRewriteError("the rewritten document does not read back the same; edit the YAML instead")
    # Comments do not survive parsing; keep the document's opening comment and say where this came from.
    opening = [line for line in _leading_comments(version.source)]
    note = f"# Thresholds changed from {version.policy.name} v{version.number} in the web UI."
    return "\n".join([*opening, note, ""]) + text


def _leading_comments(source: str) -> list[str]:
    lines = []
    for line in source.lstrip("\ufeff").splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# Thresholds changed from "):
            lines.append(line)
    return lines
