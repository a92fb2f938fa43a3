"""Prometheus metrics. Counters and histograms are written by the workers (multiprocess mode when
PROMETHEUS_MULTIPROC_DIR is set, as the launcher does); state gauges are read from Postgres and
Redis when `/metrics` is scraped, so they are right whichever process changed the state."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

STEPS = Counter(
    "arbiter_steps", "Model calls made, by tier, deployment and outcome", ["tier", "deployment", "outcome"]
)
COST = Counter("arbiter_cost_usd", "Spend on model calls in USD, by tier", ["tier"])
ESCALATIONS = Counter("arbiter_escalations", "Escalations, by the tier escalated from", ["from_tier"])
JOBS_FINISHED = Counter(
    "arbiter_jobs_finished", "Jobs that reached a final or held state", ["status", "task_type"]
)
CONFIDENCE = Histogram(
    "arbiter_confidence",
    "Confidence scores per deployment",
    ["deployment"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0),
)
LATENCY = Histogram(
    "arbiter_provider_latency_seconds",
    "Provider call latency per deployment",
    ["deployment"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class StateCollector:
    """Gauges of current state, computed at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from routing.execute.breaker import CircuitBreaker
        from routing.models import ApprovalRequest, Job, ModelDeployment, Step

        jobs = GaugeMetricFamily(
            "arbiter_jobs", "Jobs by status and task type", labels=["status", "task_type"]
        )
        for row in Job.objects.values("status", "task_type").annotate(n=Count("pk")).order_by():
            jobs.add_metric([row["status"], row["task_type"]], row["n"])
        yield jobs

        waiting = ApprovalRequest.objects.filter(status="pending")
        yield GaugeMetricFamily(
            "arbiter_approvals_waiting", "Approval requests waiting", value=waiting.count()
        )

        breakers = GaugeMetricFamily(
            "arbiter_breaker_open",
            "1 when a deployment's circuit breaker is open or half-open",
            labels=["deployment"],
        )
        for name in ModelDeployment.objects.values_list("name", flat=True):
            breakers.add_metric([name], 0 if CircuitBreaker(name).state().state == "closed" else 1)
        yield breakers

        month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        spend = GaugeMetricFamily(
            "arbiter_application_spend_month_usd",
            "Spend this calendar month per application",
            labels=["application"],
        )
        spent = (
            Step.objects.filter(created_at__gte=month_start)
            .values("job__application__slug")
            .annotate(total=Sum("cost_usd"))
            .order_by()
        )
        for application in spent:
            spend.add_metric([application["job__application__slug"]], float(application["total"] or 0))
        yield spend


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.ARBITER_METRICS_TOKEN
    if token and not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
        return HttpResponse(
            "a bearer token is required for /metrics\n", status=401, content_type="text/plain"
        )
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    state = CollectorRegistry()
    state.register(StateCollector())
    body = generate_latest(registry) + generate_latest(state)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
