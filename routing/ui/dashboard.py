"""`/`: the plots people would rather look at than read, each over a bounded window."""

from __future__ import annotations

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from routing.ui import metrics
from web import charts
from web.access import EVERYONE, role_required

CACHE_SECONDS = 20


@require_GET
@role_required(*EVERYONE)
def dashboard(request: HttpRequest) -> HttpResponse:
    # The figures are the same for everyone; a short cache keeps a wall of open dashboards cheap.
    context = cache.get_or_set("ui:dashboard", _figures, CACHE_SECONDS)
    return render(request, "ui/dashboard.html", context)


def _figures() -> dict:
    now = timezone.now()
    days, spend = metrics.spend_per_tier_per_day(now=now)
    rates = metrics.escalation_rates(now=now)
    waiting = metrics.approvals_waiting(now=now)
    budgets = metrics.spend_against_budget()
    minutes, per_minute = metrics.jobs_per_minute(now=now)
    return {
        "now": now,
        "window_days": metrics.WINDOW_DAYS,
        "spend_total": sum(sum(values) for values in spend.values()),
        "spend_chart": charts.stacked_bars(
            [day.strftime("%d %b") for day in days],
            [charts.Series(tier, values) for tier, values in spend.items()],
            title=f"Spend per tier per day, last {metrics.WINDOW_DAYS} days (USD)",
            fmt=charts.usd,
            label_every=1,
            width=1200,
            height=260,
        ),
        "escalation_chart": charts.horizontal_bars(
            [(rate.task_type.replace("_", " "), rate.rate, f"{charts.percent(rate.rate)} of {rate.jobs}")
             for rate in rates],
            title="Share of jobs escalated at least once, per task type",
            maximum=1.0,
        ),
        "confidence_charts": [
            (distribution.tier, charts.histogram(
                distribution.counts,
                title=f"{distribution.tier}: confidence scores",
                threshold=distribution.threshold,
            ))
            for distribution in metrics.confidence_distributions(now=now)
        ],
        "waiting": waiting,
        "waiting_chart": charts.stacked_bars(
            [label for label, _ in waiting.buckets],
            [charts.Series("held jobs", [count for _, count in waiting.buckets])],
            title="Approvals waiting, by age",
            height=210,
        ),
        "budget_chart": charts.budget_bullets(
            [charts.Budget(row.application.name, row.spend_usd, row.soft, row.hard) for row in budgets],
            title="Spend this month against budget",
        ),
        "jobs_chart": charts.line_chart(
            [minute.strftime("%H:%M") for minute in minutes],
            per_minute,
            title="Jobs submitted per minute, last hour",
        ),
        "jobs_last_hour": sum(per_minute),
    }
