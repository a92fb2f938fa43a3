"""Unified diffs for people: a reviewer's override before it is confirmed, two policy versions."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add", "del", "hunk", "ctx", "head"
    text: str

    @property
    def sign(self) -> str:
        # A true minus sign: as wide as the plus, and unmistakable beside a hyphen in the text.
        return {"add": "+", "del": "−", "hunk": "@", "head": " "}.get(self.kind, " ")  # noqa: RUF001


def unified(before: str, after: str, *, before_name: str, after_name: str, context: int = 3) -> list[DiffLine]:
    lines = []
    for raw in difflib.unified_diff(
        before.splitlines(), after.splitlines(), fromfile=before_name, tofile=after_name, lineterm="", n=context
    ):
        if raw.startswith(("---", "+++")):
            lines.append(DiffLine("head", raw))
        elif raw.startswith("@@"):
            lines.append(DiffLine("hunk", raw))
        elif raw.startswith("+"):
            lines.append(DiffLine("add", raw[1:]))
        elif raw.startswith("-"):
            lines.append(DiffLine("del", raw[1:]))
        else:
            lines.append(DiffLine("ctx", raw[1:]))
    return lines


def as_text(value: object) -> str:
    """The form two outputs are compared in: indented JSON with sorted keys, content unescaped."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def output_text(output: dict | None) -> str:
    """A model output as lines a reviewer can diff: the content as written, then each tool call's
    arguments as indented JSON."""
    if not output:
        return "(no output)"
    lines = ["content:", *(str(output.get("content") or "").splitlines() or ["(empty)"])]
    for call in output.get("tool_calls") or []:
        lines.append(f"tool call {call.get('name', '?')} arguments:")
        lines.extend(as_text(call.get("arguments")).splitlines())
    return "\n".join(lines)
