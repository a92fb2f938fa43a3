"""Tool-call arguments checked against the tool's own JSON Schema, from the job's request.

A model's tool call is an answer only if its arguments are a JSON object that the tool's `parameters`
schema accepts: arguments that do not parse, that are not an object, or that the schema rejects make
the answer invalid (the cascade escalates it like a confidence of 0; the last tier's is held for a human,
see `routing.decide.approval_rules`). A call to a tool the job did not offer is not checked here: governance
blocks it outright.

Schemas are the application's, so they are checked when the job is submitted (`schema_problem`), and
validated with a registry that resolves no remote `$ref`: a schema must never make a worker fetch a URL.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema
from jsonschema_specifications import REGISTRY as SPECIFICATIONS
from referencing.exceptions import Unresolvable

MAX_MESSAGE = 300


def schema_problem(schema: object) -> str | None:
    """Why `schema` is not a valid JSON Schema (for the dialect it declares, else 2020-12), or None."""
    if not isinstance(schema, dict | bool):
        return "must be a JSON Schema object"
    if isinstance(schema, bool):
        return None  # `true` accepts every instance, `false` none: both are schemas of every dialect
    try:
        _validator_class(schema).check_schema(schema)
    except jsonschema.SchemaError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        return f"is not a valid JSON Schema at {where}: {error.message}"
    return None


def problems(tools: list[dict[str, Any]], tool_calls: list[dict[str, Any]]) -> list[str]:
    """One message per tool call whose arguments its tool does not accept; empty when all are fine.

    `tool_calls` are as the pipeline records them: `{"name", "arguments"}`, where arguments are the parsed
    JSON, or the provider's text when it did not parse."""
    schemas = {
        tool["function"]["name"]: tool["function"].get("parameters")
        for tool in tools
        if isinstance(tool, Mapping) and isinstance(tool.get("function"), Mapping)
    }
    found = []
    for index, call in enumerate(tool_calls):
        name = call.get("name")
        if name not in schemas:
            continue
        problem = _arguments_problem(schemas[name], call.get("arguments"))
        if problem:
            found.append(f"tool call #{index} {name!r}: {problem}"[:MAX_MESSAGE])
    return found


def _arguments_problem(schema: object, arguments: object) -> str | None:
    if isinstance(arguments, str | bytes):
        return "the arguments are not valid JSON"
    if not isinstance(arguments, Mapping):
        kind = "a list" if isinstance(arguments, list) else "null" if arguments is None else "a scalar"
        return f"the arguments are {kind}, not a JSON object"
    if schema is None:
        return None
    validator = _validator(json.dumps(schema, sort_keys=True))
    if validator is None:  # a job stored before submission checked its schemas
        return "the tool's parameters schema is not a valid JSON Schema"
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    except Unresolvable:
        return "the tool's parameters schema has a reference that cannot be resolved"
    if error is None:
        return None
    return f"the arguments do not match the tool's schema at {violation(error)}"


def violation(error: jsonschema.ValidationError) -> str:
    """Where and why a value breaks its schema, written only from the schema: "amount (type: \"number\")".

    Never from the value: not its message (which quotes the value), not its instance path (whose keys
    are the model's own and may be an e-mail address). This text goes into the step, the approval
    request and the append-only ledger."""
    expected = json.dumps(error.validator_value, ensure_ascii=False)
    if len(expected) > 80:
        expected = expected[:77] + "..."
    return f"{schema_location(error.absolute_schema_path)} ({error.validator}: {expected})"


# Keywords whose next part of a schema path is the schema author's name or index for a subschema.
_NAMED = {"properties", "$defs", "definitions", "dependentSchemas"}
_KEYED = {"additionalProperties", "patternProperties", "unevaluatedProperties", "propertyNames"}
_ITEMS = {"items", "prefixItems", "additionalItems", "unevaluatedItems", "contains"}


def schema_location(schema_path: Iterable[object]) -> str:
    """The instance location of a violation, spelled with the names the schema declares: a declared
    property by its name, any other key as `<key>`, an array element as `[]` (by its index when the
    schema declares positions). The last part of the path is the failing keyword itself."""
    parts = list(schema_path)[:-1]
    where: list[str] = []
    index = 0
    while index < len(parts):
        part = parts[index]
        if part == "properties" and index + 1 < len(parts):
            where.append(str(parts[index + 1]))
            index += 2
            continue
        if part == "prefixItems" and index + 1 < len(parts):
            where.append(f"[{parts[index + 1]}]")
            index += 2
            continue
        if part in _KEYED:
            where.append("<key>")
            index += 2 if part == "patternProperties" else 1
            continue
        if part in _ITEMS:
            where.append("[]")
        elif part in _NAMED:
            index += 1  # a definition's name says nothing about where in the instance
        index += 1
    return "/".join(where) or "(root)"


def _validator_class(schema: Mapping[str, Any] | bool) -> type[jsonschema.protocols.Validator]:
    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.protocols.Validator | None:
    """A validator per distinct schema (checking a schema costs more than validating arguments)."""
    schema = json.loads(schema_json)
    if schema_problem(schema) is not None:
        return None
    return _validator_class(schema)(schema, registry=SPECIFICATIONS)
