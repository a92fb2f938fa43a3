"""Synthesising a minimal JSON instance that validates against a JSON Schema.

Covers what structured-output schemas use in practice: objects, arrays, scalars with bounds, enum,
const, anyOf/oneOf/allOf and local ``$ref``. ``hints`` name values for properties (``confidence``,
``answer``...), used when they fit the property's schema, so that a self-reported confidence is the
simulated model's own. ``pattern`` is not solved: a hint that happens to match is the best on offer.
"""

from __future__ import annotations

import math
import re
from typing import Any

_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_MAX_DEPTH = 32


def minimal_instance(schema: Any, hints: dict[str, Any] | None = None) -> Any:
    return _Synthesiser(schema, hints or {}).instance(schema, hint=None, variant=0, depth=0)


class _Synthesiser:
    def __init__(self, root: Any, hints: dict[str, Any]) -> None:
        self.root = root
        self.hints = hints

    def instance(self, schema: Any, *, hint: Any, variant: int, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError("schema nests too deeply (or recurses) to synthesise an instance")
        if schema is True or schema == {}:
            return hint if hint is not None else {}
        if schema is False or not isinstance(schema, dict):
            raise ValueError("schema admits no instance")
        if "$ref" in schema:
            return self.instance(self._resolve(schema["$ref"]), hint=hint, variant=variant, depth=depth + 1)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return hint if hint in schema["enum"] else schema["enum"][variant % len(schema["enum"])]
        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                branch = {**{k: v for k, v in schema.items() if k != keyword}, **schema[keyword][0]}
                return self.instance(branch, hint=hint, variant=variant, depth=depth + 1)
        if "allOf" in schema:
            return self.instance(_merge(schema), hint=hint, variant=variant, depth=depth + 1)
        kind = _kind(schema)
        build = getattr(self, f"_{kind}", None)
        if build is None:
            raise ValueError(f"unsupported schema type {kind!r}")
        return build(schema, hint, variant, depth)

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        node = self.root
        for part in filter(None, ref[1:].split("/")):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def _object(self, schema: dict[str, Any], hint: Any, variant: int, depth: int) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties", {})
        names = list(schema.get("required", []))
        # Hinted properties are worth including even when optional: they carry the self-report.
        names += [name for name in properties if name in self.hints and name not in names]
        result: dict[str, Any] = {}
        for name in names:
            sub = properties.get(name, schema.get("additionalProperties", True))
            sub = {} if sub is False else sub
            result[name] = self.instance(sub, hint=self.hints.get(name), variant=variant, depth=depth + 1)
        return result

    def _array(self, schema: dict[str, Any], hint: Any, variant: int, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems", [])
        count = max(schema.get("minItems", 0), len(prefix))
        items = schema.get("items", {})
        return [
            self.instance(prefix[i] if i < len(prefix) else items, hint=None, variant=i, depth=depth + 1)
            for i in range(count)
        ]

    def _string(self, schema: dict[str, Any], hint: Any, variant: int, depth: int) -> str:
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if isinstance(hint, str) and len(hint) >= low and (high is None or len(hint) <= high):
            pattern = schema.get("pattern")
            if pattern is None or re.search(pattern, hint):
                return hint
        if schema.get("format") in _FORMATS and variant == 0:
            return _FORMATS[schema["format"]]
        # The variant keeps items of a uniqueItems array apart.
        text = f"x{variant}" if variant else "x"
        text = text.ljust(low, "x")
        return text[:high] if high is not None else text

    def _number(self, schema: dict[str, Any], hint: Any, variant: int, depth: int) -> float | int:
        return _bounded(schema, hint, variant, integer=False)

    def _integer(self, schema: dict[str, Any], hint: Any, variant: int, depth: int) -> int:
        return int(_bounded(schema, hint, variant, integer=True))

    def _boolean(self, schema: dict[str, Any], hint: Any, variant: int, depth: int) -> bool:
        return hint if isinstance(hint, bool) else variant % 2 == 1

    def _null(self, schema: dict[str, Any], hint: Any, variant: int, depth: int) -> None:
        return None


def _kind(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        return non_null[0] if non_null else "null"
    if kind is not None:
        return kind
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _merge(schema: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        for key, value in part.items():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _bounded(schema: dict[str, Any], hint: Any, variant: int, *, integer: bool) -> float:
    low, high = schema.get("minimum"), schema.get("maximum")
    low_open, high_open = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    step = schema.get("multipleOf") or (1 if integer else None)

    def fits(value: float) -> bool:
        return (
            (low is None or value >= low)
            and (high is None or value <= high)
            and (low_open is None or value > low_open)
            and (high_open is None or value < high_open)
            and (not step or abs(value / step - round(value / step)) < 1e-9)
        )

    if isinstance(hint, int | float) and not isinstance(hint, bool) and fits(hint):
        return hint
    floor = max((b for b in (low, low_open) if b is not None), default=None)
    ceiling = min((b for b in (high, high_open) if b is not None), default=None)
    if step is None:
        candidates: list[float] = [0.0]
        if floor is not None and ceiling is not None:
            candidates.insert(0, floor + (ceiling - floor) * (1 - 1 / (variant + 2)))
        elif floor is not None:
            candidates.insert(0, floor + 1 + variant)
        elif ceiling is not None:
            candidates.insert(0, ceiling - 1 - variant)
        else:
            candidates.insert(0, float(variant))
    elif floor is not None:
        first = math.ceil(floor / step) * step
        candidates = [first + k * step for k in range(variant, variant + 3)]
    elif ceiling is not None:
        last = math.floor(ceiling / step) * step
        candidates = [last - k * step for k in range(variant, variant + 3)]
    else:
        candidates = [variant * step]
    for value in candidates:
        if fits(value):
            return int(value) if float(value).is_integer() else value
    raise ValueError("no number satisfies the schema's bounds")
