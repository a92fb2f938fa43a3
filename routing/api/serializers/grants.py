"""Approval grants: as given beside a released answer, and their redemption. Validation only."""

from __future__ import annotations

from rest_framework import serializers

from routing.api.serializers.common import StrictSerializer


class GrantOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    tool_call_id = serializers.CharField(help_text="The tool call it approves: `result.output.tool_calls[].id`.")
    tool = serializers.CharField()
    arguments_sha256 = serializers.CharField(help_text="SHA-256 (hex) of the approved arguments, canonical JSON.")
    expires_at = serializers.CharField(help_text="UTC; it cannot be redeemed after this.")
    redeemed_at = serializers.DateTimeField(allow_null=True)
    token = serializers.CharField(
        help_text="The signed grant, `<base64url(claims)>.<base64url(Ed25519 signature)>`: verify it offline, then "
        "redeem it once with POST /api/v1/grants/{id}/redeem before executing the call (see GRANTS.md)."
    )


class GrantRedeemInputSerializer(StrictSerializer):
    token = serializers.CharField(
        max_length=8000, trim_whitespace=False, help_text="The grant's `token` exactly as Arbiter gave it."
    )
    tool = serializers.CharField(max_length=200, trim_whitespace=False, help_text="The tool about to be called.")
    arguments = serializers.JSONField(
        help_text="The arguments about to be passed: an object, or its JSON text (as chat completions give it). "
        "Compared by the SHA-256 of their canonical JSON, so key order and whitespace do not matter; values do."
    )


class GrantRedemptionOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    job = serializers.UUIDField(source="job_id")
    tool_call_id = serializers.CharField()
    tool = serializers.CharField()
    arguments_sha256 = serializers.CharField()
    redeemed_at = serializers.DateTimeField()
    ledger_event_id = serializers.IntegerField(help_text="The `grant.redeemed` ledger event.")
