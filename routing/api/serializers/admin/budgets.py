"""An application's monthly budget and this month's spend."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from routing.api.serializers.common import StrictSerializer


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
