"""Layer 2 of policy validation: the published JSON Schema (`schema.json`, draft 2020-12), its errors
translated into messages a policy's author reads. A `when` that breaks the schema is reported by the
condition language's own checker, which names the field and operator at fault."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from routing.decide.policy.compiler import compile_when
from routing.decide.policy.errors import Path
from routing.decide.policy.fields import SCOPE_APPROVAL, SCOPE_ROUTE
from routing.decide.tiers import TIER_NAMES


@cache
def policy_schema() -> dict[str, Any]:
    """The published JSON Schema of policy documents."""
    return json.loads(resources.files("routing.decide.policy").joinpath("schema.json").read_text("utf-8"))


@cache
def _schema_validator() -> Draft202012Validator:
    return Draft202012Validator(policy_schema())


def schema_problems(data: Any) -> list[tuple[Path, str]]:
    problems: list[tuple[Path, str]] = []
    conditions_checked: dict[Path, bool] = {}
    for error in _schema_validator().iter_errors(data):
        path = tuple(error.absolute_path)
        when = _enclosing_when(path)
        if when is not None:
            # The condition language's own checker names the field and operator at fault; a schema
            # anyOf over condition shapes could only say that none of three shapes fit.
            if when not in conditions_checked:
                scope = SCOPE_ROUTE if when[0] == "rules" else SCOPE_APPROVAL
                _, condition_errors = compile_when(_at(data, when), scope=scope, path=when)
                problems.extend((e.path, e.message) for e in condition_errors)
                conditions_checked[when] = bool(condition_errors)
            if conditions_checked[when]:
                continue
        problems.extend(_translate(error))
    return problems


def _enclosing_when(path: Path) -> Path | None:
    if len(path) >= 3 and path[0] in ("rules", "approvals") and isinstance(path[1], int) and path[2] == "when":
        return path[:3]
    return None


def _at(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data


_JSON_TYPES = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}


_SCHEMA_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "null": "null",
}


def _schema_types(types: str | list[str]) -> str:
    names = [types] if isinstance(types, str) else types
    return " or ".join(_SCHEMA_TYPES.get(name, name) for name in names)


def _json_type(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _translate(error: ValidationError) -> list[tuple[Path, str]]:
    path = tuple(error.absolute_path)
    # An error from `iter_errors` always carries these; the stubs also allow an error built without them.
    # The keyword's value and the instance are JSON data whose type the keyword decides.
    keyword = error.validator
    expected: Any = error.validator_value
    instance: Any = error.instance
    properties = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
    if "propertyNames" in error.relative_schema_path:
        return [((*path, str(instance)), f"unknown key {instance!r} (expected one of {', '.join(TIER_NAMES)})")]
    if keyword == "required":
        return [((*path,), f"missing required property '{name}'") for name in expected if name not in instance]
    if keyword == "additionalProperties":
        allowed = ", ".join(properties)
        extras = [key for key in instance if key not in properties]
        return [((*path, key), f"unknown property '{key}' (allowed: {allowed})") for key in extras]
    if keyword == "type":
        return [(path, f"expected {_schema_types(expected)}, got {_json_type(instance)}")]
    if keyword == "enum":
        return [(path, f"{json.dumps(instance)} is not one of: {', '.join(map(str, expected))}")]
    if keyword == "const":
        return [(path, f"must be {json.dumps(expected)}")]
    if keyword == "minItems":
        return [(path, "must not be empty" if expected == 1 else f"needs at least {expected} items")]
    if keyword == "maxItems":
        return [(path, f"has more than {expected} items")]
    if keyword in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        bound = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[keyword]
        return [(path, f"{json.dumps(instance)} must be {bound} {expected}")]
    if keyword == "uniqueItems":
        return [(path, "items must be unique")]
    if keyword == "pattern":
        if expected.startswith("^[A-Za-z0-9]"):
            return [(path, f"invalid id {instance!r}: 1-64 letters, digits, '-', '_', '.' or ':'")]
        if "smhd" in expected:
            return [(path, f"invalid duration {instance!r}: use e.g. 90s, 30m, 4h, 2d or 1h30m")]
        if expected.startswith("^[a-z_]"):
            return [(path, f"invalid method name {instance!r}")]
        return [(path, f"{instance!r} does not match {expected}")]
    if keyword in ("anyOf", "oneOf") and error.context:
        # A branch of another type says nothing useful ("expected string, got a mapping"): report the
        # branch the value's own type fits, or, if none fits, every type that would have.
        fitting = [e for e in error.context if not (e.validator == "type" and not e.relative_path)]
        if fitting:
            return _translate(best_match(fitting))
        types: list[Any] = [e.validator_value for e in error.context]
        wanted = sorted({t for value in types for t in (value if isinstance(value, list) else [value])})
        return [(path, f"expected {_schema_types(wanted)}, got {_json_type(instance)}")]
    return [(path, error.message)]
