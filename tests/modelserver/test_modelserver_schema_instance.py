"""The synthesised structured-output instance validates against the schemas applications actually send."""

from __future__ import annotations

import jsonschema
import pytest

from modelserver.schema_instance import minimal_instance

SCHEMAS = [
    {"type": "object"},
    {"type": "string", "minLength": 5, "maxLength": 8},
    {"type": "string", "format": "date-time"},
    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
    {"type": "number", "maximum": -3},
    {"type": "integer", "minimum": 7, "multipleOf": 5},
    {"type": "array", "items": {"type": "integer"}, "minItems": 3, "uniqueItems": True},
    {"type": "array", "prefixItems": [{"type": "boolean"}, {"const": "x"}]},
    {"anyOf": [{"type": "null"}, {"type": "string"}]},
    {"type": ["null", "integer"], "minimum": 2},
    {"allOf": [{"properties": {"a": {"type": "string"}}, "required": ["a"]}, {"required": ["b"]}]},
    {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"$ref": "#/definitions/entry"}, "minItems": 1}},
        "required": ["items"],
        "definitions": {
            "entry": {
                "type": "object",
                "properties": {"kind": {"enum": ["a", "b"]}, "weight": {"type": "number", "minimum": 1}},
                "required": ["kind", "weight"],
                "additionalProperties": False,
            }
        },
    },
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_it_synthesises_a_valid_instance(schema: dict) -> None:
    jsonschema.validate(minimal_instance(schema), schema)


def test_it_uses_hints_only_where_they_fit() -> None:
    schema = {
        "type": "object",
        "properties": {
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "answer": {"type": "string", "pattern": "^[0-9]+$"},
        },
        "required": ["answer"],
    }

    fitting = minimal_instance(schema, {"confidence": 0.73, "answer": "42"})
    unfitting = minimal_instance(schema, {"confidence": 7.3, "answer": "forty-two"})

    assert fitting == {"answer": "42", "confidence": 0.73}
    assert unfitting["confidence"] != 7.3
    assert unfitting["answer"] != "forty-two"
