"""Applications."""

from __future__ import annotations

from rest_framework import serializers

from routing.api.serializers.common import StrictSerializer


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
