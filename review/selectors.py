"""Reads of the review UI: the queue of held jobs, a job's whole story, recent jobs.

Index use, at 1M jobs / 5M events:
- the queue walks `approval_queue` (status, created_at, id) for status = 'pending' in order and joins
  each row to its job by primary key; filters on job columns are checked on the joined row, so a page
  reads about `size` pending requests (more only when a filter is very selective), and the keyset
  cursor starts the scan where the last page ended;
- a job page reads the job by primary key, its steps by `step_once_per_attempt` (job, attempt, index),
  its approval requests and decisions by their foreign-key indexes, and its ledger events by
  `ledger_event_job` (subject_job, xact_id, id) with their seals by the unique event_id;
- the recent-jobs list walks `job_status_created` (status, -created_at, -id) or the created_at index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db.models import Prefetch, QuerySet

from audit import payloads
from audit.models import LedgerEvent
from audit.selectors import events_for_job, with_actor_names
from review.services import approval_progress
from routing.models import ApprovalDecision, ApprovalRequest, Job, Step

JOB_EVENTS_SHOWN = 500
BULKY_JOB_FIELDS = ("request", "result", "route", "labels", "constraints", "metadata")


@dataclass(frozen=True)
class QueueFilters:
    task_type: str = ""
    tier: str = ""
    rule: str = ""
    application: str = ""
    older_than: timedelta | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None


def held_approvals(filters: QueueFilters, *, now: datetime) -> QuerySet[ApprovalRequest]:
    """Pending approval requests of held jobs, oldest first, matching every given filter."""
    # A pending request always belongs to a held job (the services change both in one transaction);
    # filtering on the job's status too makes Postgres misjudge the join and sort every held job.
    requests = ApprovalRequest.objects.filter(status="pending")
    if filters.task_type:
        requests = requests.filter(job__task_type=filters.task_type)
    if filters.tier:
        requests = requests.filter(job__final_tier=filters.tier)
    if filters.rule:
        requests = requests.filter(rule_ids__contains=[filters.rule])
    if filters.application:
        requests = requests.filter(job__application__slug=filters.application)
    if filters.older_than:
        requests = requests.filter(created_at__lte=now - filters.older_than)
    if filters.min_confidence is not None:
        requests = requests.filter(job__final_confidence__gte=filters.min_confidence)
    if filters.max_confidence is not None:
        requests = requests.filter(job__final_confidence__lte=filters.max_confidence)
    # A row of the queue needs none of the job's bulky JSON (prompt, answer, route): leave it in TOAST.
    return (
        requests.select_related("job__application")
        .defer(*(f"job__{name}" for name in BULKY_JOB_FIELDS))
        .order_by("created_at", "id")
    )


@dataclass(frozen=True)
class QueueRow:
    """A held job's row in the queue: its approval request and how far each requirement has got."""

    approval: ApprovalRequest
    progress: list[dict[str, Any]]


def with_decisions(requests: list[ApprovalRequest]) -> list[QueueRow]:
    """Each request with its progress, from its decisions (one query for a page of requests)."""
    decisions: dict[int, list[ApprovalDecision]] = {}
    for decision in ApprovalDecision.objects.filter(request__in=requests).select_related("actor"):
        decisions.setdefault(decision.request_id, []).append(decision)
    return [
        QueueRow(request, approval_progress(request.job, request, decisions=decisions.get(request.pk, [])))
        for request in requests
    ]


def held_count(filters: QueueFilters, *, now: datetime, cap: int = 10_000) -> tuple[int, bool]:
    """How many held jobs match, counted up to `cap` (a count past it says "10,000+", cheaply)."""
    count = held_approvals(filters, now=now).order_by()[: cap + 1].count()
    return min(count, cap), count > cap


def job_story(job_id: UUID | str) -> Job | None:
    decisions = ApprovalDecision.objects.select_related("actor").order_by("created_at", "id")
    requests = ApprovalRequest.objects.prefetch_related(Prefetch("decisions", queryset=decisions)).order_by(
        "created_at", "id"
    )
    return (
        Job.objects.select_related("application", "policy_version__policy", "submitted_by", "replay_of")
        .prefetch_related(
            Prefetch("steps", queryset=Step.objects.select_related("deployment").order_by("attempt", "index")),
            Prefetch("approval_requests", queryset=requests),
        )
        .filter(pk=job_id)
        .first()
    )


def job_events(job: Job) -> list[LedgerEvent]:
    return with_actor_names(list(events_for_job(job.pk)[:JOB_EVENTS_SHOWN]))


def job_erasure(job: Job) -> LedgerEvent | None:
    """The event that says when and why the job's content was erased (None while it has not been)."""
    if job.erased_at is None:
        return None
    erased = events_for_job(job.pk).filter(event_type="job.erased").order_by("-id")[:1]
    event = next(iter(with_actor_names(list(erased))), None)
    if event is not None:
        # The operator's reference lives in the payload store (erasable), named by digest; events written
        # before issue 16 carry it redacted in the body.
        digest = event.body.get("reference_sha256")
        event.reference = (payloads.load(digest) if digest else event.body.get("reference")) or ""  # type: ignore[attr-defined]
    return event


def job_replays(job: Job) -> QuerySet[Job]:
    return job.replays.select_related("policy_version__policy").order_by("-created_at", "-id")


def recent_jobs(*, status: str = "", application: str = "") -> QuerySet[Job]:
    jobs = Job.objects.select_related("application").defer(*BULKY_JOB_FIELDS)
    if status:
        jobs = jobs.filter(status=status)
    if application:
        jobs = jobs.filter(application__slug=application)
    return jobs.order_by("-created_at", "-id")

