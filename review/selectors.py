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
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db.models import Count, Prefetch, Q, QuerySet

from audit import payloads
from audit.models import LedgerEvent
from audit.selectors import events_for_job, with_actor_names
from review.services import approval_progress
from routing.models import ApprovalDecision, ApprovalRequest, Job, JobStatus, Run, RunRole, Step
from routing.selectors import run_jobs

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
        Job.objects.select_related("application", "policy_version__policy", "submitted_by", "replay_of", "run")
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



def recent_runs(*, application: str = "", state: str = "", held: bool = False) -> QuerySet[Run]:
    """Agent runs, newest first (`run_app_opened`), with how many of their calls are held now. `state`:
    "open" or "closed"; `held`: only runs with a call awaiting approval."""
    runs = Run.objects.select_related("application").annotate(
        held_calls=Count("jobs", filter=Q(jobs__status=JobStatus.AWAITING_APPROVAL))
    )
    if application:
        runs = runs.filter(application__slug=application)
    if state in ("open", "closed"):
        runs = runs.filter(closed_at__isnull=state == "open")
    if held:
        runs = runs.filter(held_calls__gt=0)
    return runs.order_by("-opened_at", "-id")


def run_story(run_id: UUID | str) -> Run | None:
    return Run.objects.select_related("application").filter(pk=run_id).first()


@dataclass(frozen=True)
class RunCall:
    """One call of a run, as its page lists it: the job, how deep it sits (a subagent's call under the
    planner call before it), and what it took from submission to its outcome."""

    job: Job
    depth: int
    latency_s: float | None


@dataclass(frozen=True)
class TierTotal:
    tier: str
    calls: int
    cost_usd: Decimal


@dataclass(frozen=True)
class Workload:
    """Which tier answered which task type in this run, and how often that task had to escalate."""

    task_type: str
    by_tier: dict[str, int]
    calls: int
    escalated: int


def run_calls(run: Run) -> list[RunCall]:
    jobs = list(run_jobs(run=run).select_related("application").defer(*BULKY_JOB_FIELDS))
    calls, planner_seen = [], False
    for job in jobs:
        planner_seen = planner_seen or job.run_role == RunRole.PLANNER
        depth = 1 if planner_seen and job.run_role != RunRole.PLANNER else 0
        latency = (job.finished_at - job.created_at).total_seconds() if job.finished_at else None
        calls.append(RunCall(job=job, depth=depth, latency_s=latency))
    return calls


def run_totals(calls: list[RunCall]) -> tuple[list[TierTotal], list[Workload]]:
    """Totals by answering tier, and the run's workload profile (task type by tier, escalations)."""
    tiers: dict[str, list] = {}
    tasks: dict[str, Workload] = {}
    for call in calls:
        tier = call.job.final_tier or "none"
        total = tiers.setdefault(tier, [0, Decimal(0)])
        total[0] += 1
        total[1] += call.job.total_cost_usd
        work = tasks.get(call.job.task_type) or Workload(call.job.task_type, {}, 0, 0)
        by_tier = {**work.by_tier, tier: work.by_tier.get(tier, 0) + 1}
        tasks[call.job.task_type] = Workload(
            call.job.task_type, by_tier, work.calls + 1, work.escalated + (1 if call.job.escalations else 0)
        )
    order = {"nano": 0, "mini": 1, "flagship": 2}
    ranked = sorted(tiers.items(), key=lambda item: order.get(item[0], 3))
    totals = [TierTotal(tier, count, cost) for tier, (count, cost) in ranked]
    return totals, sorted(tasks.values(), key=lambda work: -work.calls)
