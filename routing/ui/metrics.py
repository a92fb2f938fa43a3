"""Selectors behind the dashboard. Each reads a bounded window (the last 14 days, this month, the last
hour) through an index whose leading column is the window's time or a short IN list before it, so the
cost grows with the window's rows, never with the table:

- steps: `step_tier_created` (tier, created_at) with `tier IN (nano, mini, flagship)`
- jobs: the `created_at` index (db_index) for the per-minute counts and the escalation rates
- approvals: `approval_queue` (status, created_at, id) with status = 'pending'
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Count, F, FloatField, Q, Sum
from django.db.models.functions import Cast, Floor, Least, TruncDate, TruncMinute

from routing.decide.tiers import TIER_NAMES
from routing.execute.budgets import month_start
from routing.models import Application, ApprovalRequest, Job, Step

WINDOW_DAYS = 14
HISTOGRAM_BINS = 20
# Labels are read by people: en dashes for ranges.
AGE_BUCKETS = (
    ("< 15 min", timedelta(0), timedelta(minutes=15)),
    ("15 min–1 h", timedelta(minutes=15), timedelta(hours=1)),  # noqa: RUF001
    ("1–4 h", timedelta(hours=1), timedelta(hours=4)),  # noqa: RUF001
    ("4–24 h", timedelta(hours=4), timedelta(hours=24)),  # noqa: RUF001
    ("> 24 h", timedelta(hours=24), None),
)


def window_start(now: datetime) -> datetime:
    return (now - timedelta(days=WINDOW_DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)


def spend_per_tier_per_day(*, now: datetime) -> tuple[list[date], dict[str, list[float]]]:
    since = window_start(now)
    days = [since.date() + timedelta(days=offset) for offset in range(WINDOW_DAYS)]
    spend = {tier: [0.0] * WINDOW_DAYS for tier in TIER_NAMES}
    rows = (
        Step.objects.filter(tier__in=TIER_NAMES, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("tier", "day")
        .annotate(total=Sum("cost_usd"))
    )
    for row in rows:
        offset = (row["day"] - days[0]).days
        if 0 <= offset < WINDOW_DAYS:
            spend[row["tier"]][offset] = float(row["total"] or 0)
    return days, spend


@dataclass(frozen=True)
class EscalationRate:
    task_type: str
    jobs: int
    escalated: int

    @property
    def rate(self) -> float:
        return self.escalated / self.jobs if self.jobs else 0.0


def escalation_rates(*, now: datetime) -> list[EscalationRate]:
    rows = (
        Job.objects.filter(created_at__gte=window_start(now))
        .exclude(final_tier="")
        .values("task_type")
        .annotate(jobs=Count("id"), escalated=Count("id", filter=Q(escalations__gt=0)))
        .order_by("task_type")
    )
    return [EscalationRate(row["task_type"], row["jobs"], row["escalated"]) for row in rows]


@dataclass(frozen=True)
class ConfidenceDistribution:
    tier: str
    counts: list[int]
    threshold: float | None  # the threshold most of the window's steps on this tier were held to


def confidence_distributions(*, now: datetime) -> list[ConfidenceDistribution]:
    bucket = Least(Floor(F("confidence") * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)
    rows = (
        Step.objects.filter(tier__in=TIER_NAMES, created_at__gte=window_start(now), confidence__isnull=False)
        .annotate(bucket=Cast(bucket, FloatField()))
        .values("tier", "threshold", "bucket")
        .annotate(steps=Count("id"))
    )
    counts = {tier: [0] * HISTOGRAM_BINS for tier in TIER_NAMES}
    per_threshold: dict[str, dict[float | None, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        index = min(max(int(row["bucket"]), 0), HISTOGRAM_BINS - 1)
        counts[row["tier"]][index] += row["steps"]
        per_threshold[row["tier"]][row["threshold"]] += row["steps"]
    result = []
    for tier in TIER_NAMES:
        thresholds = per_threshold.get(tier, {})
        usual = max(thresholds.items(), key=lambda item: item[1])[0] if thresholds else None
        result.append(ConfidenceDistribution(tier, counts[tier], usual))
    return result


@dataclass(frozen=True)
class WaitingApprovals:
    buckets: list[tuple[str, int]]
    oldest: timedelta | None

    @property
    def total(self) -> int:
        return sum(count for _, count in self.buckets)


def approvals_waiting(*, now: datetime) -> WaitingApprovals:
    counts = {}
    for index, (_, younger, older) in enumerate(AGE_BUCKETS):
        condition = Q(created_at__lte=now - younger)
        if older is not None:
            condition &= Q(created_at__gt=now - older)
        counts[f"bucket{index}"] = Count("id", filter=condition)
    pending = ApprovalRequest.objects.filter(status="pending")
    row = pending.aggregate(**counts)
    oldest = pending.order_by("created_at", "id").values_list("created_at", flat=True).first()
    return WaitingApprovals(
        [(label, row[f"bucket{index}"]) for index, (label, _, _) in enumerate(AGE_BUCKETS)],
        now - oldest if oldest else None,
    )


@dataclass(frozen=True)
class ApplicationSpend:
    application: Application
    spend_usd: float

    @property
    def soft(self) -> float | None:
        value = self.application.monthly_soft_limit_usd
        return None if value is None else float(value)

    @property
    def hard(self) -> float | None:
        value = self.application.monthly_hard_limit_usd
        return None if value is None else float(value)


def spend_against_budget(*, limit: int = 10) -> list[ApplicationSpend]:
    """This month's spend of the applications that spend most or have a budget (at most `limit`)."""
    rows = (
        Step.objects.filter(tier__in=TIER_NAMES, created_at__gte=month_start())
        .values("job__application_id")
        .annotate(total=Sum("cost_usd"))
    )
    totals = {row["job__application_id"]: row["total"] for row in rows}
    budgeted = Application.objects.filter(
        Q(monthly_hard_limit_usd__isnull=False) | Q(monthly_soft_limit_usd__isnull=False), is_active=True
    ).values_list("id", flat=True)[:limit]
    ids = {*sorted(totals, key=lambda pk: totals[pk], reverse=True)[:limit], *budgeted}
    applications = Application.objects.in_bulk(ids)
    rows = [ApplicationSpend(applications[pk], float(totals.get(pk) or 0)) for pk in ids if pk in applications]
    return sorted(rows, key=lambda row: (-row.spend_usd, row.application.name))[:limit]


def jobs_per_minute(*, now: datetime, minutes: int = 60) -> tuple[list[datetime], list[int]]:
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    rows = (
        Job.objects.filter(created_at__gte=start)
        .annotate(minute=TruncMinute("created_at"))
        .values("minute")
        .annotate(jobs=Count("id"))
    )
    counts = {row["minute"]: row["jobs"] for row in rows}
    stamps = [start + timedelta(minutes=offset) for offset in range(minutes)]
    return stamps, [counts.get(stamp, 0) for stamp in stamps]

