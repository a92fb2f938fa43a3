"""Control markers: bracketed tags in message text that steer the simulated model.

They let tests and the demo choose an outcome while the request travels through Arbiter's unchanged
pipeline, e.g. ``[task:reasoning] [difficulty:0.9] [confidence:nano=0.3,flagship=0.95]``.
A malformed marker is a client error (400), because a silently ignored marker would make a test pass
or fail for the wrong reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from modelserver.protocol import ApiError
from routing.decide.tiers import TASK_TYPES

_TASK = re.compile(r"\[task:([^\]]*)\]")
_DIFFICULTY = re.compile(r"\[difficulty:([^\]]*)\]")
_CONFIDENCE = re.compile(r"\[confidence:([^\]]*)\]")
_ITEM = re.compile(r"\[item:([^\]\s]+)\]")
_CALL = re.compile(r"\[call:([A-Za-z0-9_.\-]+)")
_INVALID_JSON = "[invalid_json]"
_INVALID_JSON_AT = re.compile(r"\[invalid_json:([^\]]*)\]")


@dataclass(frozen=True)
class ToolCallMarker:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Markers:
    task_type: str | None = None
    difficulty: float | None = None
    confidence_by_tier: dict[str, float] = field(default_factory=dict)
    call: ToolCallMarker | None = None
    invalid_json: bool = False
    invalid_json_tiers: frozenset[str] = frozenset()  # `[invalid_json:nano,mini]`: only these tiers'

    def invalid_json_at(self, tier: str) -> bool:
        return self.invalid_json or tier in self.invalid_json_tiers


def item_marker(text: str) -> str | None:
    """The last ``[item:<id>]`` in the text: recorded mode's explicit match."""
    found = _ITEM.findall(text)
    return found[-1] if found else None


def parse_markers(text: str, *, call_text: str | None = None) -> Markers:
    """Read every marker; the last occurrence wins so a later turn can override an earlier one.

    ``call_text`` is where a ``[call:...]`` marker counts (by default ``text``): the caller narrows it so
    that a conversation which already carries a tool result does not call the same tool forever.
    """
    return Markers(
        task_type=_last_task(text),
        difficulty=_last_difficulty(text),
        confidence_by_tier=_last_confidence(text),
        call=_last_call(text if call_text is None else call_text),
        invalid_json=_INVALID_JSON in text,
        invalid_json_tiers=frozenset(
            tier.strip() for found in _INVALID_JSON_AT.findall(text) for tier in found.split(",") if tier.strip()
        ),
    )


def _marker_error(message: str) -> ApiError:
    return ApiError(400, message, param="messages", code="invalid_marker")


def _last_task(text: str) -> str | None:
    found = _TASK.findall(text)
    if not found:
        return None
    task_type = found[-1].strip()
    if task_type not in TASK_TYPES:
        raise _marker_error(f"[task:{task_type}] is not a task type; use one of {', '.join(TASK_TYPES)}.")
    return task_type


def _unit_interval(raw: str, marker: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise _marker_error(f"{marker} needs a number between 0 and 1, got {raw!r}.") from None
    if not 0.0 <= value <= 1.0:
        raise _marker_error(f"{marker} needs a number between 0 and 1, got {raw!r}.")
    return value


def _last_difficulty(text: str) -> float | None:
    found = _DIFFICULTY.findall(text)
    return _unit_interval(found[-1].strip(), "[difficulty:...]") if found else None


def _last_confidence(text: str) -> dict[str, float]:
    found = _CONFIDENCE.findall(text)
    if not found:
        return {}
    by_tier: dict[str, float] = {}
    for pair in found[-1].split(","):
        tier, sep, raw = pair.partition("=")
        if not sep or not tier.strip():
            raise _marker_error(f"[confidence:...] expects tier=value pairs, got {pair.strip()!r}.")
        by_tier[tier.strip()] = _unit_interval(raw.strip(), "[confidence:...]")
    return by_tier


def _last_call(text: str) -> ToolCallMarker | None:
    calls = list(_CALL.finditer(text))
    if not calls:
        return None
    match = calls[-1]
    rest_at = match.end()
    while rest_at < len(text) and text[rest_at].isspace():
        rest_at += 1
    arguments: Any = {}
    # The arguments are JSON that may itself contain "]", so they are decoded rather than matched.
    if rest_at < len(text) and text[rest_at] == "{":
        try:
            arguments, rest_at = json.JSONDecoder().raw_decode(text, rest_at)
        except json.JSONDecodeError as exc:
            raise _marker_error(f"[call:{match.group(1)} ...] has invalid JSON arguments: {exc.msg}.") from None
        while rest_at < len(text) and text[rest_at].isspace():
            rest_at += 1
    if rest_at >= len(text) or text[rest_at] != "]":
        raise _marker_error(f"[call:{match.group(1)} ...] must be closed by ']' after its JSON arguments.")
    if not isinstance(arguments, dict):
        raise _marker_error(f"[call:{match.group(1)} ...] arguments must be a JSON object.")
    return ToolCallMarker(name=match.group(1), arguments=arguments)
