"""Escalation thresholds written back into a policy document: the one place that does it.

Read every (rule, tier) threshold of a source; write a new document with the changed ones — the parsed
document with only those values set, serialised back to YAML in the hand-written style and refused unless
it reads back the same. The web UI's threshold form (`thresholds_rewritten`, keeping the source's opening
comment) and calibration (`thresholds_written` over a calibrated document's data) both call it; either
result becomes a new draft version."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import yaml

from routing.decide.policy.document import load_policy
from routing.decide.policy.source import parse_source


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


def thresholds_of(source: str) -> list[Threshold]:
    document = load_policy(source)
    return [
        Threshold(index, rule.id, tier, rule.escalate_below[tier], tier in rule.threshold_defaulted)
        for index, rule in enumerate(document.rules)
        for tier in rule.cascade[:-1]
    ]


class _PolicyDumper(yaml.SafeDumper):
    """YAML the way policies are written by hand: sections and list items as blocks, sequences
    indented under their key, and a rule's values on one line (`escalate_below: {nano: 0.8}`), so
    that a diff against the version it came from shows the change rather than a reformatting."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
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
        entries = {key: _styled(item, depth + 1) for key, item in value.items()}
        return _FlowDict(entries) if depth >= 3 and len(repr(value)) <= _ONE_LINE else entries
    if isinstance(value, list):
        items = [_styled(item, depth + 1) for item in value]
        plain = all(not isinstance(item, dict | list) for item in value)
        return _FlowList(items) if (depth >= 3 or plain) and len(repr(value)) <= _ONE_LINE else items
    return value


def rule_threshold_changes(
    data: Mapping, rule_thresholds: Mapping[str, Mapping[str, float]]
) -> dict[tuple[int, str], float]:
    """Thresholds by rule id and tier, as (rule index, tier) changes; tiers outside a rule's escalating
    steps are ignored."""
    return {
        (index, tier): rule_thresholds[rule["id"]][tier]
        for index, rule in enumerate(data["rules"])
        if rule.get("id") in rule_thresholds
        for tier in rule["cascade"][:-1]
        if tier in rule_thresholds[rule["id"]]
    }


def thresholds_written(data: dict, changes: Mapping[tuple[int, str], float], *, header: Sequence[str]) -> str:
    """`data` (a policy document as data) with `changes` ((rule index, tier) -> threshold) written in, as
    YAML under the `header` comment lines."""
    for (index, tier), value in changes.items():
        data["rules"][index].setdefault("escalate_below", {})[tier] = value
    text = yaml.dump(_styled(data), Dumper=_PolicyDumper, sort_keys=False, allow_unicode=True, width=120)
    # PyYAML writes YAML 1.1; the policy loader reads the 1.2 core schema. Make sure nothing changed
    # meaning on the way (a string that 1.2 would read as a number, say) before anyone sees the draft.
    reread, _, errors = parse_source(text)
    if errors or reread != data:
        raise ThresholdRewriteError("the rewritten document does not read back the same; edit the YAML instead")
    return "\n".join([*header, ""]) + text


def thresholds_rewritten(source: str, changes: Mapping[tuple[int, str], float], *, note: str) -> str:
    """`source` with `changes` written in. Comments do not survive parsing: the source's opening comment
    is kept, followed by `note` (a comment line saying where this came from)."""
    data, _, errors = parse_source(source)
    if errors:
        raise ThresholdRewriteError("the version's source no longer parses: " + "; ".join(map(str, errors)))
    return thresholds_written(data, changes, header=[*_leading_comments(source), note])


def _leading_comments(source: str) -> list[str]:
    lines = []
    for line in source.lstrip("\ufeff").splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# Thresholds changed from "):
            lines.append(line)
    return lines
