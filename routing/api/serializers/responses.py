"""The OpenAI Responses request, as far as Arbiter accepts it, translated into the chat request the
pipeline runs; and the Response object it returns (for the schema).

A Responses call is one job like a chat completion: its `input` items become chat messages (a
`function_call` item is an assistant message's tool call, a `function_call_output` a tool message), its
function tools the chat tool shape, `text.format` the chat `response_format`. The translated pieces are
checked by the chat serializers, so both faces accept exactly the same conversations.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from routing.api.serializers.common import (
    MessageSerializer,
    ModelParametersSerializer,
    ResponseFormatSerializer,
    StrictSerializer,
    ToolSerializer,
    checked_tool_choice,
)
from routing.api.serializers.grants import GrantOutputSerializer
from routing.api.serializers.openai import OpenAIMetadataField
from routing.decide.parameters import from_responses as parameters_from_responses
from routing.decide.parameters import responses_name

RESPONSE_ID = re.compile(r"resp_([0-9a-f]{32})")
MESSAGE_ROLES = ("user", "system", "developer", "assistant")
TEXT_PARTS = ("input_text", "output_text", "text")
TOOL_CHOICES = ("auto", "none", "required")
REASONING_FIELDS = {"effort", "summary", "generate_summary"}
# Item types a client sends back from an earlier output that carry nothing the model needs again.
SKIPPED_ITEMS = ("reasoning",)


def _invalid(where: str, message: str) -> serializers.ValidationError:
    return serializers.ValidationError(f"{where}: {message}")


def _text(content: Any, where: str) -> str:
    """A message's content (a string or a list of text parts) as one string."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(where, "content must be a string or a list of text parts")
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        elif kind in TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            raise _invalid(
                f"{where}[{index}]",
                f"only text parts ({', '.join(TEXT_PARTS[:2])}) are supported, not {kind!r}",
            )
    return "".join(texts)


def _string(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise _invalid(where, f"`{name}` is required (a non-empty string)")
    return value


def chat_messages(items: str | list[Any]) -> list[dict[str, Any]]:
    """The `input` as chat messages. Consecutive `function_call` items (and the assistant message just
    before them) are one assistant turn, as the chat shape has it."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise _invalid(where, "an input item is an object")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in MESSAGE_ROLES:
                raise _invalid(where, f"role {role!r} is not one of {', '.join(MESSAGE_ROLES)}")
            messages.append({"role": role, "content": _text(item.get("content"), f"{where}.content")})
        elif kind == "function_call":
            call = {
                "id": _string(item, "call_id", where),
                "type": "function",
                "function": {"name": _string(item, "name", where), "arguments": item.get("arguments") or ""},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": _string(item, "call_id", where),
                    "content": _text(output if output is not None else "", f"{where}.output"),
                }
            )
        elif kind in SKIPPED_ITEMS:
            continue
        else:
            raise _invalid(
                where,
                f"item type {kind!r} is not supported; supported: message, function_call, function_call_output",
            )
    return messages


def chat_tools(tools: list[Any]) -> list[dict[str, Any]]:
    chat = []
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise _invalid(f"tools[{index}]", f"only function tools are supported, not {kind!r}")
        function = {
            key: tool[key] for key in ("name", "description", "parameters", "strict") if tool.get(key) is not None
        }
        unknown = set(tool) - {"type", "name", "description", "parameters", "strict"}
        if unknown:
            raise _invalid(f"tools[{index}]", f"unknown field(s): {', '.join(sorted(unknown))}")
        chat.append({"type": "function", "function": function})
    return chat


def responses_tools(chat: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The job's chat tools back in the Responses shape."""
    return [
        {"type": "function", "parameters": None, "strict": None, "description": None, **tool["function"]}
        for tool in chat or []
    ]


def chat_response_format(text: dict[str, Any]) -> dict[str, Any] | None:
    form = text.get("format")
    if form is None:
        return None
    if not isinstance(form, dict):
        raise _invalid("text.format", "an object")
    if form.get("type") != "json_schema":
        return {"type": form.get("type")}
    schema = {key: form[key] for key in ("name", "description", "schema", "strict") if form.get(key) is not None}
    return {"type": "json_schema", "json_schema": schema}


def responses_text(response_format: dict[str, Any] | None, *, verbosity: str | None = None) -> dict[str, Any]:
    if not response_format:
        form = {"type": "text"}
    elif response_format["type"] != "json_schema":
        form = {"type": response_format["type"]}
    else:
        form = {"type": "json_schema", **response_format["json_schema"]}
    return {"format": form, **({"verbosity": verbosity} if verbosity else {})}


def chat_parameters(attrs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The request's Chat Completions parameters, checked as a chat completion's are (the names in an
    error are the caller's), and the Responses parameters no deployment is sent."""
    parameters, not_sent = parameters_from_responses(attrs)
    choice = parameters.pop("tool_choice", None)
    checked = ModelParametersSerializer(data=parameters)
    if not checked.is_valid():
        raise serializers.ValidationError({responses_name(name): error for name, error in checked.errors.items()})
    parameters = dict(checked.validated_data)
    if choice is not None:
        parameters["tool_choice"] = checked_tool_choice(choice, attrs.get("chat_tools"))
    return parameters, not_sent


def _checked(serializer: serializers.Serializer, field: str) -> Any:
    if not serializer.is_valid():
        raise serializers.ValidationError({field: serializer.errors})
    return serializer.validated_data


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "object", "additionalProperties": True}, "maxItems": 500},
        ],
        "description": "Text (one user message), or items: messages (`role`, `content` as text or text parts), "
        "`function_call` and `function_call_output` items.",
    }
)
class InputField(serializers.JSONField):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            return data
        if not isinstance(data, list) or not data:
            raise serializers.ValidationError("a string, or a non-empty list of input items")
        if len(data) > 500:
            raise serializers.ValidationError("at most 500 input items")
        return data


class ResponseCreateInputSerializer(StrictSerializer):
    model = serializers.CharField(
        max_length=200, help_text="`auto` (the default policy) or `arbiter/<policy>`: a policy, not a model."
    )
    input = InputField()
    instructions = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=256_000)
    tools = serializers.ListField(child=serializers.JSONField(), required=False, max_length=128)
    tool_choice = serializers.JSONField(required=False)
    text = serializers.JSONField(required=False, help_text="`format`: text, json_object or json_schema.")
    previous_response_id = serializers.CharField(required=False, allow_null=True, max_length=64)
    store = serializers.BooleanField(required=False, allow_null=True, default=True)
    metadata = OpenAIMetadataField(required=False, allow_null=True)
    stream = serializers.BooleanField(
        required=False, default=False, help_text="Server-sent events, once the governed answer is released."
    )
    background = serializers.BooleanField(required=False, allow_null=True)
    include = serializers.ListField(child=serializers.CharField(), required=False, allow_null=True)
    user = serializers.CharField(required=False, max_length=256, allow_blank=True, allow_null=True)
    # Sent to the deployment that answers under their Chat Completions names (routing.decide.parameters),
    # as far as its catalog entry takes them; what it does not take is named in `x-arbiter-ignored-params`.
    temperature = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    max_output_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1_000_000)
    parallel_tool_calls = serializers.BooleanField(required=False, allow_null=True)
    truncation = serializers.ChoiceField(choices=["auto", "disabled"], required=False, allow_null=True)
    reasoning = serializers.JSONField(
        required=False, allow_null=True, help_text="`effort` is sent as `reasoning_effort`; `summary` is not sent."
    )
    service_tier = serializers.CharField(required=False, allow_null=True)
    prompt_cache_key = serializers.CharField(required=False, allow_null=True, max_length=256)
    safety_identifier = serializers.CharField(required=False, allow_null=True, max_length=256)
    top_logprobs = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=20)
    max_tool_calls = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="Accepted, not sent: one call is one model turn."
    )

    def validate_previous_response_id(self, value: str | None) -> str | None:
        if value is not None and not RESPONSE_ID.fullmatch(value):
            raise serializers.ValidationError("not a response id (`resp_` and 32 hex digits)")
        return value

    def validate_tool_choice(self, value: Any) -> Any:
        if value in TOOL_CHOICES or value is None:
            return value
        if isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("name"), str):
            return value
        raise serializers.ValidationError('one of "auto", "none", "required", or {"type": "function", "name": ...}')

    def validate_reasoning(self, value: Any) -> Any:
        if value is not None and not (isinstance(value, dict) and set(value) <= REASONING_FIELDS):
            raise serializers.ValidationError(f"an object with {', '.join(sorted(REASONING_FIELDS))}")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Adds the chat shape the job is submitted with: `messages`, `chat_tools`, `response_format`."""
        try:
            messages = chat_messages(attrs["input"])
        except serializers.ValidationError as error:
            raise serializers.ValidationError({"input": error.detail}) from None
        attrs["messages"] = _checked(MessageSerializer(data=messages, many=True), "input")
        try:
            tools = chat_tools(attrs.get("tools") or [])
        except serializers.ValidationError as error:
            raise serializers.ValidationError({"tools": error.detail}) from None
        text = attrs.get("text") or {}
        if not isinstance(text, dict):
            raise serializers.ValidationError({"text": "an object with `format`"})
        try:
            response_format = chat_response_format(text)
        except serializers.ValidationError as error:
            raise serializers.ValidationError({"text": error.detail}) from None
        attrs["chat_tools"] = _checked(ToolSerializer(data=tools, many=True), "tools") if tools else None
        attrs["response_format"] = (
            _checked(ResponseFormatSerializer(data=response_format), "text") if response_format else None
        )
        attrs["chat_parameters"], attrs["parameters_not_sent"] = chat_parameters(attrs)
        return attrs


class OutputTextSerializer(serializers.Serializer):
    type = serializers.CharField(default="output_text")
    text = serializers.CharField()
    annotations = serializers.ListField(child=serializers.JSONField())


def _item_schema(description: str, types: list[str], **more: dict[str, str]) -> dict[str, object]:
    """The OpenAPI schema of a Responses item: a message or a function call (and, as input, its output)."""
    return {
        "type": "object",
        "description": description,
        "properties": {
            "type": {"type": "string", "enum": types},
            "id": {"type": "string"},
            "status": {"type": "string"},
            "role": {"type": "string"},
            "content": {"type": "array", "items": {"type": "object"}},
            "call_id": {"type": "string"},
            "name": {"type": "string"},
            "arguments": {"type": "string"},
            **more,
        },
        "required": ["type", "id", "status"],
    }


@extend_schema_field(
    _item_schema(
        "A `message` item (`role: assistant`, `content`: output_text parts) or a `function_call` item (`call_id`, "
        "`name`, `arguments` as JSON text).",
        ["message", "function_call"],
    )
)
class OutputItemField(serializers.JSONField):
    pass


class ResponseUsageSerializer(serializers.Serializer):
    input_tokens = serializers.IntegerField()
    input_tokens_details = serializers.JSONField()
    output_tokens = serializers.IntegerField()
    output_tokens_details = serializers.JSONField()
    total_tokens = serializers.IntegerField(help_text="Summed over every step, escalations included.")


class ResponseErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ResponseArbiterSerializer(serializers.Serializer):
    job_id = serializers.UUIDField()
    job_url = serializers.CharField()
    job_status = serializers.CharField()
    result_withheld = serializers.CharField(allow_null=True, help_text="Why there is no output yet, or ever.")
    grants = GrantOutputSerializer(
        many=True, help_text="The signed approval grants of the released answer's function calls (GRANTS.md)."
    )


class ResponseOutputSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="`resp_` and the job's id in hex.")
    object = serializers.CharField(default="response")
    created_at = serializers.IntegerField()
    status = serializers.ChoiceField(
        choices=["completed", "incomplete", "in_progress", "queued", "failed", "cancelled"]
    )
    error = ResponseErrorSerializer(allow_null=True)
    incomplete_details = serializers.JSONField(allow_null=True)
    instructions = serializers.CharField(allow_null=True)
    model = serializers.CharField()
    output = serializers.ListField(child=OutputItemField(), help_text="Empty until the answer is released.")
    parallel_tool_calls = serializers.BooleanField()
    max_output_tokens = serializers.IntegerField(allow_null=True)
    temperature = serializers.FloatField(allow_null=True)
    top_p = serializers.FloatField(allow_null=True)
    reasoning = serializers.JSONField(help_text="`effort` as asked; `summary` is always null.")
    previous_response_id = serializers.CharField(allow_null=True)
    store = serializers.BooleanField()
    text = serializers.JSONField()
    tool_choice = serializers.JSONField()
    tools = serializers.ListField(child=serializers.JSONField())
    usage = ResponseUsageSerializer(allow_null=True)
    metadata = serializers.DictField(child=serializers.CharField())
    arbiter = ResponseArbiterSerializer()


class ResponseDeletedSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="response")
    deleted = serializers.BooleanField()


@extend_schema_field(
    _item_schema(
        "A `message` item (`role`, `content`: input_text parts, or output_text parts for an assistant), a "
        "`function_call` item (`call_id`, `name`, `arguments`) or a `function_call_output` item (`call_id`, "
        "`output`).",
        ["message", "function_call", "function_call_output"],
        output={"type": "string"},
    )
)
class InputItemField(serializers.JSONField):
    pass


class InputItemListSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = serializers.ListField(child=InputItemField())
    first_id = serializers.CharField(allow_null=True)
    last_id = serializers.CharField(allow_null=True)
    has_more = serializers.BooleanField()
