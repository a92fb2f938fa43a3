"""Arbiter as a system under test: gunicorn and a Celery worker on a scratch database, with or without
its ledger (a bench-only stub), and what its jobs' own rows say about where the time went."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

from bench.peer.load import percentile
from bench.peer.processes import pinned, stop_process
from bench.support import checkout_database

BASE_DIR = Path(__file__).resolve().parents[2]
DATABASE = checkout_database("arbiter_bench_peer")
GUNICORN = {"workers": 2, "threads": 8}  # 16 request threads: concurrency 16 never queues for a thread
CELERY_CONCURRENCY = 4


def _ledger_stub() -> None:
    """Replace the ledger's two writers with no-ops in this process (bench only; Arbiter has no switch)."""
    from audit import ledger, payloads
    from audit.models import LedgerEvent

    def append(event_type: str, *, actor, subject: dict | None = None, body: dict | None = None) -> LedgerEvent:
        return LedgerEvent(event_type=event_type, actor_kind=actor.kind, actor_id=actor.id)

    def store(content: object, *, kind: str, subject: dict | None = None) -> str:
        return hashlib.sha256(repr(content).encode()).hexdigest()

    ledger.append = append
    payloads.store = store


def noledger_application():
    """gunicorn factory (`bench.peer.arbiter:noledger_application()`): Arbiter's WSGI app, ledger stubbed."""
    from controlplane.wsgi import application

    _ledger_stub()
    return application


def noledger_worker(argv: list[str]) -> None:
    """A Celery worker whose ledger writes are stubbed (the stub is inherited by the prefork children)."""
    import django

    django.setup()
    _ledger_stub()
    from controlplane.celery import app

    app.worker_main(argv)


class Arbiter:
    """gunicorn + Celery worker on a private queue, both pinned to the system-under-test core."""

    def __init__(self, *, env: dict[str, str], port: int, ledger: bool, cores: set[int] | None) -> None:
        queue = f"arbiter-bench-peer-{uuid.uuid4().hex[:8]}"
        self.queue = queue
        self.env = {**env, "ARBITER_QUEUE": queue}
        self.port = port
        self.ledger = ledger
        app = "controlplane.wsgi:application" if ledger else "bench.peer.arbiter:noledger_application()"
        worker_args = ["worker", "--pool", "prefork", "--concurrency", str(CELERY_CONCURRENCY), "--queues", queue,
                       "--loglevel", "WARNING", "--hostname", f"bench-peer-{uuid.uuid4().hex[:6]}@%h",
                       "--without-gossip", "--without-mingle", "--without-heartbeat"]
        if ledger:
            worker = [sys.executable, "-m", "celery", "-A", "controlplane", *worker_args]
        else:
            code = f"from bench.peer.arbiter import noledger_worker; noledger_worker({worker_args!r})"
            worker = [sys.executable, "-c", code]
        common = {"cwd": BASE_DIR, "env": self.env, "start_new_session": True, "preexec_fn": pinned(cores),
                  "stdout": subprocess.DEVNULL}
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}", "--workers",
             str(GUNICORN["workers"]), "--threads", str(GUNICORN["threads"]), "--worker-class", "gthread",
             "--log-level", "warning", "--keep-alive", "30"],
            **common,
        )
        self.worker = subprocess.Popen(worker, **common)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def pids(self) -> list[int]:
        return [self.web.pid, self.worker.pid]

    def stop(self) -> None:
        stop_process(self.web)
        stop_process(self.worker)


def arbiter_setup(model_url: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """Scratch database, seeded: (database url, {application slug: key}, environment for Arbiter's processes).
    One application per Arbiter variant, so that each one's jobs can be read back apart."""
    from bench.support import scratch_database, server_urls

    _, redis_url = server_urls()
    url = scratch_database(DATABASE)
    os.environ.update(DATABASE_URL=url, REDIS_URL=redis_url, DJANGO_SETTINGS_MODULE="controlplane.settings",
                      ARBITER_QUEUE=f"arbiter-bench-peer-seed-{uuid.uuid4().hex[:6]}")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from audit.ledger import Actor
    from routing.demo.seed import seed_catalog, seed_policy
    from routing.models import Application
    from routing.services.keys import api_key_create

    settings.ARBITER_MODELSERVER_URL = model_url
    seed_catalog()
    seed_policy()
    keys = {}
    for slug in ("arbiter", "arbiter-noledger"):
        application = Application.objects.create(slug=slug, name=slug)
        _, keys[slug] = api_key_create(application=application, scopes=["jobs:write", "jobs:read"],
                                       actor=Actor.system("bench"),
        created_by=get_user_model().objects.get_or_create(username="bench")[0])
    from django.db import connections

    connections.close_all()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "ARBITER_RATE_LIMIT_PER_MINUTE": "0",
        # One key drives every thread at once here (a benchmark, not a tenant): the concurrency bounds are
        # raised to the thread count, as the rate limit is turned off.
        "ARBITER_WEB_THREADS": str(GUNICORN["threads"]),
        "ARBITER_SYNC_CALLS_PER_PROCESS": str(GUNICORN["threads"]),
        "ARBITER_SYNC_CALLS_PER_KEY": str(GUNICORN["workers"] * GUNICORN["threads"]),
        "ARBITER_SYNC_CALLS_TOTAL": str(GUNICORN["workers"] * GUNICORN["threads"]),
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "PYTHONPATH": str(BASE_DIR),
    }
    return url, keys, env


def job_timings(slug: str, windows: list[tuple[datetime, datetime]],
                escalation_windows: list[tuple[datetime, datetime]]) -> dict:
    """What the jobs of the concurrency-1 phases took inside Arbiter, from their own rows: submit → claimed by
    a worker, submit → finished; and the same for the escalated jobs. Set beside the HTTP latency, the
    difference is the time the view spends noticing that the job has finished (it polls the row)."""
    from django.db.models import Q

    from routing.models import Job

    def finished_ms(spans: list[tuple[datetime, datetime]], escalations: int) -> tuple[list[float], list[float]]:
        if not spans:
            return [], []
        during = Q()
        for start, end in spans:
            during |= Q(created_at__gte=start, created_at__lt=end)
        rows = Job.objects.filter(
            during, application__slug=slug, status="completed", escalations=escalations
        ).values_list("created_at", "started_at", "finished_at")
        claimed = [(started - created).total_seconds() * 1000 for created, started, _ in rows if started]
        return claimed, [(done - created).total_seconds() * 1000 for created, _, done in rows if done]

    claimed, finished = finished_ms(windows, 0)
    _, escalated = finished_ms(escalation_windows, 1)
    timings = {
        "jobs": len(finished),
        "submit_to_claimed_p50_ms": round(percentile(claimed, 0.5), 1),
        "submit_to_finished_p50_ms": round(percentile(finished, 0.5), 1),
        "submit_to_finished_p99_ms": round(percentile(finished, 0.99), 1),
    }
    if escalated and finished:
        timings["escalated_jobs"] = len(escalated)
        timings["escalation_penalty_inside_p50_ms"] = round(percentile(escalated, 0.5) - percentile(finished, 0.5), 1)
    return timings
