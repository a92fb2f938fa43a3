"""Values as conditions see them: facts normalised to str, int, float, bool or MISSING, read from
mappings and paths, and shown to a person in an explanation. The two markers of approval scope live here
too: `Unreadable` (a model-output value that cannot be read at all) and `UNKNOWN` (the third truth value).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A model-output value that could not be read at all (tool-call arguments that are not a JSON
    object): every approval test on it is unknown, and the reason says why."""

    reason: str


# Approval-scope truth values (Kleene): True, False, or UNKNOWN when a test cannot be evaluated.
UNKNOWN: Any = None


# ---------------------------------------------------------------- values


def normalize(raw: object) -> object:
    """Facts arrive from callers in many shapes; conditions see only str, int, float, bool, MISSING or
    'other' (present, but equal to nothing and comparable with nothing)."""
    kind = type(raw)
    if kind is str or kind is int or kind is float or kind is bool:
        return raw
    if raw is None or raw is MISSING:
        return MISSING
    if isinstance(raw, str):
        return str.__str__(raw)
    if isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, int):
        return int.__int__(raw)
    if isinstance(raw, float):
        return float.__float__(raw)
    return raw


VALUE_TAGS: dict[type, str] = {str: "s", int: "n", float: "n", bool: "b"}
KIND_NAMES = {"s": "a string", "n": "a number", "b": "a boolean"}


def value_key(value: object) -> tuple[str, object] | None:
    tag = VALUE_TAGS.get(type(value))
    return None if tag is None else (tag, value)


def kind_name(value: object) -> str:
    if value is MISSING:
        return "missing"
    tag = VALUE_TAGS.get(type(value))
    return KIND_NAMES[tag] if tag else f"a {type(value).__name__}"


def show(value: object) -> str:
    """A value as a person reads it in an explanation."""
    if value is MISSING:
        return "missing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) < 10**30 else f"<a {value.bit_length()}-bit integer>"
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,}" if math.isfinite(value) and abs(value) < 1e15 else repr(value)
    if isinstance(value, str):
        text = value if len(value) <= 80 else value[:77] + "..."
        return repr(text)
    return f"<{type(value).__name__}>"


def show_list(values: Sequence[object]) -> str:
    # Inside a list, digit grouping would read as more items: [1000, 2], not [1,000, 2].
    return "[" + ", ".join(v if isinstance(v, str) else show(v).replace(",", "") for v in values) + "]"


def as_number(value: object) -> int | float | None:
    if type(value) is int:
        return value
    if type(value) is float and not math.isnan(value):
        return value
    return None


# ---------------------------------------------------------------- readers


def mapping_get(container: object, key: str) -> object:
    if type(container) is dict or isinstance(container, Mapping):
        return container.get(key, MISSING)
    return MISSING


def path_get(container: object, segments: tuple[str, ...]) -> object:
    value = container
    for segment in segments:
        if isinstance(value, Mapping):
            value = value.get(segment, MISSING)
        elif isinstance(value, list | tuple) and segment.isdigit():
            index = int(segment)
            value = value[index] if index < len(value) else MISSING
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value


def constraint_value(constraints: object, name: str) -> object:
    """A job constraint, from a `Constraints` object or a mapping."""
    if type(constraints) is dict or isinstance(constraints, Mapping):
        return constraints.get(name, MISSING)
    return getattr(constraints, name, MISSING)


def tool_names(raw: object) -> tuple[str, ...]:
    if type(raw) is tuple and all(type(name) is str for name in raw):
        return raw
    if isinstance(raw, str):
        return (str.__str__(raw),)
    if isinstance(raw, list | tuple | set | frozenset):
        return tuple(str.__str__(name) for name in raw if isinstance(name, str))
    return ()
