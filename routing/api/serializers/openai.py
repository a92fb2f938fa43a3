"""The OpenAI Chat Completions request, as far as Arbiter accepts it, and the response it returns."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from routing.api.serializers.common import (
    MessageSerializer,
    ResponseFormatSerializer,
    StrictSerializer,
    ToolSerializer,
)


class OpenAIMetadataField(serializers.DictField):
    """OpenAI's `metadata`: up to 16 string pairs. `task_type` and `labels` (a JSON object as a string)
    steer Arbiter; the rest is kept as the job's metadata."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=serializers.CharField(max_length=512, allow_blank=True), **kwargs)

    def to_internal_value(self, data: Any) -> dict[str, str]:
        value = super().to_internal_value(data)
        if len(value) > 16:
            raise serializers.ValidationError("at most 16 metadata pairs")
        if any(len(key) > 64 for key in value):
            raise serializers.ValidationError("metadata keys are at most 64 characters")
        return value


class StreamOptionsSerializer(StrictSerializer):
    include_usage = serializers.BooleanField(
        required=False, default=False, help_text="One last chunk, with empty `choices`, carries the usage."
    )
    include_obfuscation = serializers.BooleanField(
        required=False, help_text="Accepted and ignored: the answer is complete before the first byte."
    )


class ChatCompletionInputSerializer(StrictSerializer):
    model = serializers.CharField(
        max_length=200, help_text="`auto` (the default policy) or `arbiter/<policy>`: a policy, not a model."
    )
    messages = MessageSerializer(many=True, allow_empty=False, max_length=500)
    tools = ToolSerializer(many=True, required=False, max_length=128)
    tool_choice = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text="`none`, `auto`, `required` or `{type: function, function: {name}}`, as OpenAI documents. A "
        "forced call is governed like any other (approval rules, blocks).",
    )
    response_format = ResponseFormatSerializer(required=False)
    metadata = OpenAIMetadataField(required=False)
    stream = serializers.BooleanField(
        required=False,
        default=False,
        help_text="`true`: the released answer as `text/event-stream` `chat.completion.chunk` events, once the "
        "governed job has finished.",
    )
    stream_options = StreamOptionsSerializer(required=False, allow_null=True)
    n = serializers.IntegerField(required=False, allow_null=True, min_value=1, help_text="Only 1 (see the error).")
    user = serializers.CharField(required=False, max_length=256, allow_blank=True)
    # Sent to the deployment that answers, as far as its catalog entry says it takes them
    # (routing.decide.parameters); what it does not take is named in `x-arbiter-ignored-params`.
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
    store = serializers.BooleanField(
        required=False, allow_null=True, help_text="Accepted, never sent: Arbiter decides what a provider stores."
    )

    def validate_n(self, value: int | None) -> int | None:
        if value is not None and value > 1:
            raise serializers.ValidationError(
                "n > 1 is not served: a completion is one governed job, and its one accepted answer is what the "
                "approval rules judged and the ledger records; send n separate requests instead"
            )
        return value

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

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        choice = attrs.get("tool_choice")
        if choice is None:
            return attrs
        offered = {tool["function"]["name"] for tool in attrs.get("tools") or []}
        if not offered:
            raise serializers.ValidationError({"tool_choice": "tool_choice is only allowed when tools are given"})
        if choice in ("none", "auto", "required"):
            return attrs
        function = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise serializers.ValidationError(
                {"tool_choice": "`none`, `auto`, `required` or {\"type\": \"function\", \"function\": {\"name\": ...}}"}
            )
        if name not in offered:
            raise serializers.ValidationError({"tool_choice": f"the function {name!r} is not among the tools"})
        attrs["tool_choice"] = {"type": "function", "function": {"name": name}}
        return attrs


class ToolCallFunctionOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    arguments = serializers.CharField(help_text="JSON text, as OpenAI returns it.")


class ToolCallOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField(default="function")
    function = ToolCallFunctionOutputSerializer()


class AssistantMessageOutputSerializer(serializers.Serializer):
    role = serializers.CharField(default="assistant")
    content = serializers.CharField(allow_null=True)
    tool_calls = ToolCallOutputSerializer(many=True, required=False)
    refusal = serializers.CharField(allow_null=True)


class ChoiceOutputSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    message = AssistantMessageOutputSerializer()
    finish_reason = serializers.ChoiceField(choices=["stop", "length", "tool_calls", "content_filter"])
    logprobs = serializers.JSONField(allow_null=True)


class UsageOutputSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class ChatCompletionOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="chat.completion")
    created = serializers.IntegerField()
    model = serializers.CharField()
    choices = ChoiceOutputSerializer(many=True)
    usage = UsageOutputSerializer(help_text="Summed over every step, escalations included.")
    system_fingerprint = serializers.CharField(allow_null=True)


class ModelOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="model")
    created = serializers.IntegerField()
    owned_by = serializers.CharField()


class ModelListOutputSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = ModelOutputSerializer(many=True)
