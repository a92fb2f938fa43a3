"""`GET /healthz`: is every part the product needs up? 200 only when all of them are."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from controlplane.celery import app as celery_app

CHECK_TIMEOUT_S = 1.0
WORKER_PING_TIMEOUT_S = 0.5


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def check_broker() -> str:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_S)
    return "ok"


def check_workers() -> str:
    replies = celery_app.control.ping(timeout=WORKER_PING_TIMEOUT_S)
    if not replies:
        raise RuntimeError("no Celery worker answered a ping")
    return f"ok ({len(replies)} worker{'s' if len(replies) != 1 else ''})"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "broker": check_broker,
    "workers": check_workers,
}


def register(name: str, check: Callable[[], str]) -> None:
    """Add a check of a part another app owns (routing adds the model server when it is ready)."""
    CHECKS[name] = check


def run_checks() -> tuple[bool, dict[str, dict[str, object]]]:
    results: dict[str, dict[str, object]] = {}
    healthy = True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            detail, up = check(), True
        except Exception as exc:  # a health check reports every failure, whatever its kind
            detail, up = f"{type(exc).__name__}: {exc}".strip(), False
        healthy &= up
        results[name] = {"up": up, "detail": detail, "ms": round((time.perf_counter() - started) * 1000, 1)}
    return healthy, results


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    healthy, results = run_checks()
    return JsonResponse(
        {"status": "ok" if healthy else "degraded", "checks": results}, status=200 if healthy else 503
    )
