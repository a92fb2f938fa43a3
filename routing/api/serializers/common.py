"""Request fields shared by the jobs API and the OpenAI-compatible endpoint: strict, closed, documented."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from typing import Any, Self, TypeVar

import jsonschema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.redaction import detected, redact

# Fields Arbiter sets and a client never may: named, so that the refusal says why rather than "unknown".
SERVER_SET_FIELDS = frozenset(
    {
        "id",
        "status",
        "status_reason",
        "application",
        "application_id",
        "approved_by",
        "approval",
        "approvals",
        "request_sha256",
        "sha256",
        "hash",
        "prev_hash",
        "result",
        "route",
        "steps",
        "attempt",
        "version",
        "policy_version",
        "final_tier",
        "final_confidence",
        "total_cost_usd",
        "total_tokens",
        "escalations",
        "created_at",
        "started_at",
        "finished_at",
        "submitted_by",
        "lease_expires_at",
        "claimed_by",
    }
)

MAX_LABELS = 50
MAX_JSON_BYTES = 64 * 1024


_per_thread = threading.local()
SerializerT = TypeVar("SerializerT", bound=serializers.BaseSerializer)


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not declare: a typo must not be silently ignored."""

    @classmethod
    def for_input(cls, data: Any) -> Self:
        """`cls(data=data)` for a request's input, reusing this thread's instance of the class. A new
        serializer deep-copies every declared field, nested ones included (0.5 ms of CPU for a chat
        completion's input, the larger part of validating it): once per thread instead of once per
        request. Validation keeps no state in the fields, only on this instance, which is reset here;
        under WSGI a thread serves one request at a time (an async view, whose requests share a thread,
        must build its own). For serializers made with `data` alone."""
        instances = _per_thread.__dict__.setdefault("instances", {})
        serializer = instances.get(cls)
        if serializer is None:
            serializer = instances[cls] = cls(data=data)
            return serializer
        serializer.initial_data = data
        for outcome in ("_validated_data", "_errors", "_data"):
            serializer.__dict__.pop(outcome, None)
        return serializer

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = [name for name in data if name not in self.fields or self.fields[name].read_only]
            if unknown:
                allowed = ", ".join(name for name, field in self.fields.items() if not field.read_only)
                raise serializers.ValidationError(
                    {
                        name: [
                            f"`{name}` is set by Arbiter, not by a client"
                            if name in SERVER_SET_FIELDS
                            else f"unknown field; allowed: {allowed}"
                        ]
                        for name in unknown
                    }
                )
        return super().to_internal_value(data)


def output_serializer(cls: type[SerializerT], instance: Any, *, context: dict[str, Any]) -> SerializerT:
    """`cls(instance, context=context)` for a response, reusing this thread's instance of the class: the
    output counterpart of `StrictSerializer.for_input`, for the same reason (building a job's fields is
    0.5 ms of CPU per request). Rendering keeps no state in the fields; the instance, the context and the
    rendered data are all this instance's own, and are replaced here. Sync views only, as `for_input`."""
    instances = _per_thread.__dict__.setdefault("outputs", {})
    serializer = instances.get(cls)
    if serializer is None:
        serializer = instances[cls] = cls(instance, context=context)
        return serializer
    serializer.instance = instance
    serializer._context = context
    serializer.__dict__.pop("_data", None)
    return serializer


def choice_field(choices: tuple[str, ...], what: str, **kwargs: Any) -> serializers.ChoiceField:
    return serializers.ChoiceField(
        choices=list(choices),
        error_messages={"invalid_choice": f'"{{input}}" is not a valid {what}; allowed: {", ".join(choices)}'},
        **kwargs,
    )


def check_json_schema(schema: Any, what: str) -> None:
    if not isinstance(schema, dict | bool):
        raise serializers.ValidationError(f"{what} must be a JSON Schema object")
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        raise serializers.ValidationError(f"{what} is not a valid JSON Schema at {where}: {error.message}") from None


def json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}},
                    "required": ["type", "text"],
                    "additionalProperties": False,
                },
            },
        ],
        "nullable": True,
        "description": "Text, or a list of text parts; null only for an assistant message with tool_calls.",
    }
)
class MessageContentField(serializers.Field):
    def to_internal_value(self, data: Any) -> Any:
        if data is None or isinstance(data, str):
            return data
        if isinstance(data, list):
            for index, part in enumerate(data):
                if not (
                    isinstance(part, dict)
                    and part.get("type") == "text"
                    and isinstance(part.get("text"), str)
                    and set(part) == {"type", "text"}
                ):
                    raise serializers.ValidationError(
                        f'content part [{index}] must be {{"type": "text", "text": "..."}}; '
                        "only text parts are supported"
                    )
            return data
        raise serializers.ValidationError("content must be a string, a list of text parts, or null")

    def to_representation(self, value: Any) -> Any:
        return value


class ToolCallFunctionSerializer(StrictSerializer):
    name = serializers.RegexField(r"^[A-Za-z0-9_.\-]{1,64}$", max_length=64)
    arguments = serializers.CharField(allow_blank=True, max_length=MAX_JSON_BYTES, trim_whitespace=False)


class ToolCallSerializer(StrictSerializer):
    id = serializers.CharField(max_length=200)
    type = choice_field(("function",), "tool call type")
    function = ToolCallFunctionSerializer()


class MessageSerializer(StrictSerializer):
    role = choice_field(("system", "developer", "user", "assistant", "tool"), "message role")
    content = MessageContentField(required=False, allow_null=True)
    name = serializers.CharField(required=False, max_length=64)
    tool_call_id = serializers.CharField(required=False, max_length=200)
    tool_calls = ToolCallSerializer(many=True, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("content") is None and not (attrs["role"] == "assistant" and attrs.get("tool_calls")):
            raise serializers.ValidationError(
                {"content": "required (null only for an assistant message with tool_calls)"}
            )
        if attrs.get("tool_calls") and attrs["role"] != "assistant":
            raise serializers.ValidationError({"tool_calls": "only an assistant message has tool_calls"})
        if attrs["role"] == "tool" and not attrs.get("tool_call_id"):
            raise serializers.ValidationError({"tool_call_id": "a tool message needs the tool_call_id it answers"})
        return attrs


class FunctionSerializer(StrictSerializer):
    name = serializers.RegexField(
        r"^[A-Za-z0-9_\-]{1,64}$",
        max_length=64,
        error_messages={"invalid": "a function name is 1-64 letters, digits, `_` or `-`"},
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    parameters = serializers.JSONField(required=False, help_text="A JSON Schema for the arguments.")
    strict = serializers.BooleanField(required=False)

    def validate_parameters(self, value: Any) -> Any:
        check_json_schema(value, "parameters")
        if json_size(value) > MAX_JSON_BYTES:
            raise serializers.ValidationError(f"parameters is larger than {MAX_JSON_BYTES} bytes")
        return value


class ToolSerializer(StrictSerializer):
    type = choice_field(("function",), "tool type")
    function = FunctionSerializer()


class JsonSchemaFormatSerializer(StrictSerializer):
    name = serializers.RegexField(r"^[A-Za-z0-9_\-]{1,64}$", max_length=64)
    description = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    schema = serializers.JSONField(required=False)
    strict = serializers.BooleanField(required=False, allow_null=True)

    def validate_schema(self, value: Any) -> Any:
        check_json_schema(value, "schema")
        return value


class ResponseFormatSerializer(StrictSerializer):
    type = choice_field(("text", "json_object", "json_schema"), "response format")
    json_schema = JsonSchemaFormatSerializer(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["type"] == "json_schema" and "json_schema" not in attrs:
            raise serializers.ValidationError({"json_schema": "required when type is json_schema"})
        return attrs


# Label names go into the job.submitted ledger event, which can never be erased: names are identifiers,
# never data (a customer's e-mail address belongs in a label's value, which is redacted).
LABEL_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def label_name_check(name: object) -> None:
    if not isinstance(name, str) or not LABEL_NAME.fullmatch(name):
        shown = redact(name[:70])[0] if isinstance(name, str) else name
        raise serializers.ValidationError(
            f"label name {shown!r} must be 1-64 characters of letters, digits and _ . : -"
        )
    kinds = detected(name)
    if kinds:
        raise serializers.ValidationError(
            f"label name {redact(name)[0]!r} contains personal data ({', '.join(sorted(kinds)).lower()}); "
            "label names are kept in the audit ledger for ever: put the value in the label's value instead"
        )


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {
            "oneOf": [{"type": "string", "maxLength": 200}, {"type": "number"}, {"type": "boolean"}]
        },
        "maxProperties": MAX_LABELS,
        "propertyNames": {"pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
        "description": 'Data labels the policy routes on (e.g. `{"region": "eu", "pii": true}`): scalar values.',
        "example": {"region": "eu", "pii": True},
    }
)
class LabelsField(serializers.Field):
    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError("labels must be an object of scalar values")
        if len(data) > MAX_LABELS:
            raise serializers.ValidationError(f"at most {MAX_LABELS} labels")
        for name, value in data.items():
            label_name_check(name)
            if isinstance(value, str) and len(value) > 200:
                raise serializers.ValidationError(f"label {name!r}: at most 200 characters")
            if value is None or not isinstance(value, str | int | float | bool):
                raise serializers.ValidationError(f"label {name!r} must be a string, number or boolean")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(OpenApiTypes.OBJECT)
class MetadataField(serializers.JSONField):
    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError("metadata must be an object")
        if json_size(data) > MAX_JSON_BYTES:
            raise serializers.ValidationError(f"metadata is larger than {MAX_JSON_BYTES} bytes")
        return data


def checked_tool_choice(choice: Any, tools: list[dict[str, Any]] | None) -> Any:
    """A chat `tool_choice` checked against the chat `tools` it chooses among: one of `none`, `auto`,
    `required`, or a function that is offered, as `{type: function, function: {name}}`."""
    offered = {tool["function"]["name"] for tool in tools or []}
    if not offered:
        raise serializers.ValidationError({"tool_choice": "tool_choice is only allowed when tools are given"})
    if choice in ("none", "auto", "required"):
        return choice
    function = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise serializers.ValidationError(
            {"tool_choice": '`none`, `auto`, `required` or {"type": "function", "function": {"name": ...}}'}
        )
    if name not in offered:
        raise serializers.ValidationError({"tool_choice": f"the function {name!r} is not among the tools"})
    return {"type": "function", "function": {"name": name}}


class ModelParametersSerializer(StrictSerializer):
    """The Chat Completions parameters a caller may set (routing.decide.parameters): sent to the deployment
    that answers as far as its catalog entry takes them; what it does not take is named back. The chat
    completion and the jobs API take them from here; the Responses API's are translated into them. Each
    checks `tool_choice` against its own `tools` (`checked_tool_choice`)."""

    tool_choice = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text="`none`, `auto`, `required` or `{type: function, function: {name}}`, as OpenAI documents. A "
        "forced call is governed like any other (approval rules, blocks).",
    )
    user = serializers.CharField(required=False, allow_null=True, max_length=256, allow_blank=True)
    temperature = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    max_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1_000_000)
    max_completion_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1_000_000)
    presence_penalty = serializers.FloatField(required=False, allow_null=True, min_value=-2, max_value=2)
    frequency_penalty = serializers.FloatField(required=False, allow_null=True, min_value=-2, max_value=2)
    seed = serializers.IntegerField(required=False, allow_null=True, min_value=-(2**63), max_value=2**63 - 1)
    stop = serializers.JSONField(required=False, allow_null=True, help_text="A string or up to 4 strings.")
    logprobs = serializers.BooleanField(required=False, allow_null=True)
    top_logprobs = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=20)
    parallel_tool_calls = serializers.BooleanField(required=False, allow_null=True)
    logit_bias = serializers.DictField(
        child=serializers.IntegerField(min_value=-100, max_value=100), required=False, allow_null=True
    )
    reasoning_effort = serializers.ChoiceField(
        choices=["none", "minimal", "low", "medium", "high", "xhigh"], required=False, allow_null=True
    )
    verbosity = serializers.ChoiceField(choices=["low", "medium", "high"], required=False, allow_null=True)
    service_tier = serializers.ChoiceField(
        choices=["auto", "default", "flex", "scale", "priority"], required=False, allow_null=True
    )
    prompt_cache_key = serializers.CharField(required=False, allow_null=True, max_length=256)
    safety_identifier = serializers.CharField(required=False, allow_null=True, max_length=256)

    def validate_logit_bias(self, value: dict[str, int] | None) -> dict[str, int] | None:
        if value and (len(value) > 300 or not all(key.isdigit() for key in value)):
            raise serializers.ValidationError("at most 300 token ids (as strings) mapped to -100..100")
        return value

    def validate_stop(self, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and len(value) <= 4 and all(isinstance(item, str) for item in value):
            return value
        raise serializers.ValidationError("a string or a list of up to 4 strings")
