"""API keys (never their secrets, except the once a key is minted)."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers

from routing.api.serializers.common import StrictSerializer, choice_field
from routing.models.applications import KEY_SCOPES


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
