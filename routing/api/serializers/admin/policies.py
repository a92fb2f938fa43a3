"""Policies and their versions."""

from __future__ import annotations

from rest_framework import serializers

from routing.api.serializers.common import StrictSerializer
from routing.api.serializers.jobs import AnyObjectField

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
