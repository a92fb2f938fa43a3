"""Input and output serializers of the admin API (scopes `app:admin` and `platform:admin`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from routing.api.serializers.common import StrictSerializer, choice_field
from routing.api.serializers.jobs import AnyObjectField
from routing.decide.tiers import TIER_NAMES
from routing.models.applications import KEY_SCOPES

MAX_POLICY_SOURCE = 256 * 1024


class PolicyOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    is_default = serializers.BooleanField()
    active_version = serializers.SerializerMethodField()
    latest_version = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_active_version(self, policy) -> int | None:
        return next((v.number for v in policy.versions.all() if v.status == "active"), None)

    def get_latest_version(self, policy) -> int | None:
        return max((v.number for v in policy.versions.all()), default=None)


class PolicyVersionOutputSerializer(serializers.Serializer):
    policy = serializers.CharField(source="policy.name")
    number = serializers.IntegerField()
    status = serializers.CharField(help_text="draft, pending (submitted), active or retired")
    sha256 = serializers.CharField()
    comment = serializers.CharField()
    author = serializers.CharField(source="author.username", allow_null=True, default=None)
    submitted_by = serializers.CharField(source="submitted_by.username", allow_null=True, default=None)
    activated_by = serializers.CharField(source="activated_by.username", allow_null=True, default=None)
    activated_at = serializers.DateTimeField(allow_null=True)
    parent = serializers.IntegerField(source="parent.number", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    source = serializers.CharField()
    document = AnyObjectField()


class PolicyVersionCreateInputSerializer(StrictSerializer):
    source = serializers.CharField(
        max_length=MAX_POLICY_SOURCE, trim_whitespace=False, help_text="The policy document, YAML or JSON."
    )
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    parent = serializers.IntegerField(required=False, min_value=1, help_text="The version this one edits.")


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
    priority = serializers.IntegerField(min_value=0, max_value=32767, required=False)
    timeout_s = serializers.FloatField(min_value=0.1, max_value=3600, required=False)


class DeploymentCreateInputSerializer(DeploymentUpdateInputSerializer):
    name = serializers.SlugField(max_length=80)
    tier = choice_field(TIER_NAMES, "tier")
    base_url = serializers.URLField(max_length=500)
    model = serializers.CharField(max_length=200)
    price_in_per_mtok = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=Decimal(0))
    price_out_per_mtok = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=Decimal(0))
    enabled = serializers.BooleanField(required=False, default=True)


class ApplicationOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    slug = serializers.CharField()
    is_active = serializers.BooleanField()
    monthly_soft_limit_usd = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    monthly_hard_limit_usd = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    created_at = serializers.DateTimeField()


class ApplicationCreateInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=120)
    slug = serializers.SlugField(max_length=80)


class BudgetInputSerializer(StrictSerializer):
    monthly_soft_limit_usd = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal(0), allow_null=True
    )
    monthly_hard_limit_usd = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal(0), allow_null=True
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        soft, hard = attrs["monthly_soft_limit_usd"], attrs["monthly_hard_limit_usd"]
        if soft is not None and hard is not None and soft > hard:
            raise serializers.ValidationError({"monthly_soft_limit_usd": "the soft limit is above the hard limit"})
        return attrs


class BudgetOutputSerializer(serializers.Serializer):
    application = serializers.CharField(source="application.slug")
    monthly_soft_limit_usd = serializers.DecimalField(
        source="application.monthly_soft_limit_usd", max_digits=12, decimal_places=2, allow_null=True
    )
    monthly_hard_limit_usd = serializers.DecimalField(
        source="application.monthly_hard_limit_usd", max_digits=12, decimal_places=2, allow_null=True
    )
    month_spend_usd = serializers.DecimalField(
        source="spend", max_digits=14, decimal_places=6, help_text="This calendar month's spend (UTC)."
    )


class ApiKeyOutputSerializer(serializers.Serializer):
    prefix = serializers.CharField()
    name = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    owner = serializers.CharField(
        source="created_by.username", allow_null=True, default=None, help_text="The person the key acts for."
    )
    created_at = serializers.DateTimeField()


class ApiKeyCreatedOutputSerializer(ApiKeyOutputSerializer):
    key = serializers.CharField(help_text="The key itself: shown this once, never again. Store it now.")


class ApiKeyCreateInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=120, required=False, allow_blank=True)
    scopes = serializers.ListField(
        child=choice_field(tuple(KEY_SCOPES), "scope"), allow_empty=False, max_length=len(KEY_SCOPES)
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("expires_at must be in the future")
        return value
