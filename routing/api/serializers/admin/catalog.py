"""The model catalog's deployments."""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from routing.api.serializers.common import StrictSerializer, choice_field
from routing.decide.parameters import FORWARDABLE
from routing.decide.tiers import TIER_NAMES


class DeploymentOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    tier = serializers.CharField()
    base_url = serializers.CharField()
    model = serializers.CharField()
    api_key_env = serializers.CharField()
    price_in_per_mtok = serializers.DecimalField(max_digits=12, decimal_places=6)
    price_out_per_mtok = serializers.DecimalField(max_digits=12, decimal_places=6)
    context_window = serializers.IntegerField()
    region = serializers.CharField()
    supports_tools = serializers.BooleanField()
    supports_logprobs = serializers.BooleanField()
    supports_json_schema = serializers.BooleanField()
    parameters = serializers.ListField(
        child=serializers.CharField(), help_text="The Chat Completions parameters this deployment takes."
    )
    enabled = serializers.BooleanField()
    priority = serializers.IntegerField()
    timeout_s = serializers.FloatField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class DeploymentUpdateInputSerializer(StrictSerializer):
    tier = choice_field(TIER_NAMES, "tier", required=False)
    base_url = serializers.URLField(max_length=500, required=False)
    model = serializers.CharField(max_length=200, required=False)
    api_key_env = serializers.RegexField(
        r"^[A-Z_][A-Z0-9_]{0,99}$",
        required=False,
        allow_blank=True,
        error_messages={"invalid": "the NAME of an environment variable (A-Z, 0-9, _), never the key itself"},
    )
    price_in_per_mtok = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=Decimal(0), required=False)
    price_out_per_mtok = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=Decimal(0), required=False)
    context_window = serializers.IntegerField(min_value=1, max_value=100_000_000, required=False)
    region = serializers.RegexField(r"^[a-z0-9\-]{1,32}$", required=False)
    supports_tools = serializers.BooleanField(required=False)
    supports_logprobs = serializers.BooleanField(required=False)
    supports_json_schema = serializers.BooleanField(required=False)
    parameters = serializers.ListField(
        child=choice_field(FORWARDABLE, "parameter"),
        required=False,
        max_length=len(FORWARDABLE),
        help_text="The Chat Completions parameters this deployment takes; a caller's others are not sent to it "
        "and are named in the answer's x-arbiter-ignored-params header. Default: all of them.",
    )
    priority = serializers.IntegerField(min_value=0, max_value=32767, required=False)
    timeout_s = serializers.FloatField(min_value=0.1, max_value=3600, required=False)


    def validate_parameters(self, value: list[str]) -> list[str]:
        return [name for name in FORWARDABLE if name in value]  # one order, no repeats


class DeploymentCreateInputSerializer(DeploymentUpdateInputSerializer):
    name = serializers.SlugField(max_length=80)
    tier = choice_field(TIER_NAMES, "tier")
    base_url = serializers.URLField(max_length=500)
    model = serializers.CharField(max_length=200)
    price_in_per_mtok = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=Decimal(0))
    price_out_per_mtok = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=Decimal(0))
    enabled = serializers.BooleanField(required=False, default=True)
