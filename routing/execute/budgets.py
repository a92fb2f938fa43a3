"""Monthly budgets per application, from the steps' recorded costs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from controlplane.redis_client import get_redis
from routing.models import Application, Step


@dataclass(frozen=True)
class BudgetState:
    spend_usd: Decimal
    soft_limit_usd: Decimal | None
    hard_limit_usd: Decimal | None

    @property
    def over_soft(self) -> bool:
        return self.soft_limit_usd is not None and self.spend_usd >= self.soft_limit_usd

    @property
    def over_hard(self) -> bool:
        return self.hard_limit_usd is not None and self.spend_usd >= self.hard_limit_usd

    def to_record(self) -> dict[str, str | None]:
        return {
            "spend_usd": str(self.spend_usd),
            "soft_limit_usd": None if self.soft_limit_usd is None else str(self.soft_limit_usd),
            "hard_limit_usd": None if self.hard_limit_usd is None else str(self.hard_limit_usd),
        }


def month_start() -> datetime:
    return timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)


SPEND_CACHE_S = 5


def month_spend(application: Application) -> Decimal:
    """This calendar month's spend, from the steps' recorded costs.

    Summing a busy application's month for every job would be the most expensive query on the hot
    path, so the sum is shared through Redis for a few seconds: a budget may be overrun by what an
    application spends in SPEND_CACHE_S, never more."""
    start = month_start()
    key = f"arbiter:spend:{application.pk}:{start:%Y%m}"
    cached = get_redis().get(key)
    if cached is not None:
        return Decimal(cached.decode() if isinstance(cached, bytes) else cached)
    spend = Step.objects.filter(job__application=application, created_at__gte=start).aggregate(
        total=Sum("cost_usd")
    )["total"] or Decimal(0)
    get_redis().set(key, str(spend), ex=SPEND_CACHE_S)
    return spend


def budget_state(application: Application) -> BudgetState:
    if not application.has_budget:
        return BudgetState(Decimal(0), None, None)
    return BudgetState(month_spend(application), application.monthly_soft_limit_usd, application.monthly_hard_limit_usd)
