"""The OpenAI Chat Completions request, as far as Arbiter accepts it, and the response it returns."""

from __future__ import annotations

from typing import Any

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


class ChatCompletionInputSerializer(ModelParametersSerializer):
    model = serializers.CharField(
        max_length=200, help_text="`auto` (the default policy) or `arbiter/<policy>`: a policy, not a model."
    )
    messages = MessageSerializer(many=True, allow_empty=False, max_length=500)
    tools = ToolSerializer(many=True, required=False, max_length=128)
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

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("tool_choice") is not None:
            attrs["tool_choice"] = checked_tool_choice(attrs["tool_choice"], attrs.get("tools"))
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
    arbiter_grants = GrantOutputSerializer(
        many=True,
        required=False,
        help_text="Present when people approved this held answer's tool calls: one signed approval grant per "
        "call (also in the `x-arbiter-grants` header, comma-separated tokens). Verify, then redeem once.",
    )


class ModelOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="model")
    created = serializers.IntegerField()
    owned_by = serializers.CharField()


class ModelListOutputSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = ModelOutputSerializer(many=True)
