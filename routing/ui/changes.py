"""What changed between two policy documents, path by path (`rules[cheap-first].escalate_below.nano:
0.8 → 0.65`): the meaning of a change, whatever the formatting of either source."""

from __future__ import annotations

import json
from dataclasses import dataclass

MISSING = object()


@dataclass(frozen=True)
class Change:
    path: str
    before: object
    after: object

    @property
    def kind(self) -> str:
        if self.before is MISSING:
            return "added"
        if self.after is MISSING:
            return "removed"
        return "changed"

    @staticmethod
    def show(value: object) -> str:
        return "—" if value is MISSING else json.dumps(value, ensure_ascii=False, sort_keys=True)

    @property
    def before_text(self) -> str:
        return self.show(self.before)

    @property
    def after_text(self) -> str:
        return self.show(self.after)


def document_changes(before: object, after: object, path: str = "") -> list[Change]:
    if isinstance(before, dict) and isinstance(after, dict):
        changes = []
        for key in [*before, *(key for key in after if key not in before)]:
            child = f"{path}.{key}" if path else str(key)
            changes += document_changes(before.get(key, MISSING), after.get(key, MISSING), child)
        return changes
    if isinstance(before, list) and isinstance(after, list):
        if _identified(before) and _identified(after):
            # Rules and approvals are matched by id, so a moved rule is one change, not a cascade.
            old = {item["id"]: item for item in before}
            new = {item["id"]: item for item in after}
            order_changed = [item["id"] for item in before if item["id"] in new] != [
                item["id"] for item in after if item["id"] in old
            ]
            changes = [Change(f"{path} (order)", list(old), list(new))] if order_changed else []
            for key in [*old, *(key for key in new if key not in old)]:
                changes += document_changes(old.get(key, MISSING), new.get(key, MISSING), f"{path}[{key}]")
            return changes
        if all(not isinstance(item, dict | list) for item in [*before, *after]):
            return [] if before == after else [Change(path, before, after)]
        changes = []
        for index in range(max(len(before), len(after))):
            changes += document_changes(
                before[index] if index < len(before) else MISSING,
                after[index] if index < len(after) else MISSING,
                f"{path}[{index}]",
            )
        return changes
    return [] if before == after and type(before) is type(after) else [Change(path, before, after)]


def _identified(items: list) -> bool:
    ids = [item.get("id") for item in items if isinstance(item, dict)]
    return len(ids) == len(items) and all(isinstance(i, str) for i in ids) and len(set(ids)) == len(ids)
