"""Reads for the API. Every read of tenant data takes the caller's application and filters by it."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import Prefetch, QuerySet

from audit.models import LedgerEvent
from routing.models import (
    ApiKey,
    Application,
    ApprovalRequest,
    Job,
    ModelDeployment,
    Policy,
    PolicyVersion,
    Step,
)

# What a page of the jobs list shows (JobSummaryOutputSerializer), and nothing else.
JOB_SUMMARY_FIELDS = (
    "id",
    "status",
    "status_reason",
    "task_type",
    "labels",
    "metadata",
    "final_tier",
    "final_confidence",
    "escalations",
    "total_cost_usd",
    "created_at",
    "finished_at",
    "policy_version__number",
    "policy_version__sha256",
    "policy_version__policy__name",
)


def _job_detail_queryset() -> QuerySet[Job]:
    return Job.objects.select_related("policy_version__policy").prefetch_related(
        Prefetch("steps", queryset=Step.objects.select_related("deployment").order_by("attempt", "index")),
        Prefetch("approval_requests", queryset=ApprovalRequest.objects.prefetch_related("decisions")),
    )


def job_get_for_application(*, application: Application, job_id: uuid.UUID) -> Job | None:
    return _job_detail_queryset().filter(application=application, pk=job_id).first()


def job_list_for_application(
    *,
    application: Application,
    status: str | None = None,
    task_type: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Job]:
    # Only the columns a summary shows: no steps, approvals or bulky JSON, and of the policy version its
    # name, number and hash, not its document. Every object a page builds is garbage the moment it is
    # sent, and at a million jobs the full collections that garbage triggers were the page's p95
    # (bench/scale_bench.py).
    jobs = (
        Job.objects.select_related("policy_version__policy")
        .filter(application=application)
        .only(*JOB_SUMMARY_FIELDS)
    )
    if status:
        jobs = jobs.filter(status=status)
    if task_type:
        jobs = jobs.filter(task_type=task_type)
    if created_after:
        jobs = jobs.filter(created_at__gte=created_after)
    if created_before:
        jobs = jobs.filter(created_at__lt=created_before)
    return jobs


def job_status_for_application(*, application: Application, job_id: uuid.UUID) -> str | None:
    """One indexed column, for callers that wait on a job (the OpenAI-compatible endpoint polls it)."""
    return Job.objects.filter(application=application, pk=job_id).values_list("status", flat=True).first()


def job_ledger_events(*, job: Job) -> QuerySet[LedgerEvent]:
    """The job's ledger events in chain order (the caller has already checked the job is theirs)."""
    return LedgerEvent.objects.filter(subject_job=str(job.pk)).select_related("seal").order_by("xact_id", "id")


def job_decision_event_id(*, job: Job) -> int | None:
    """The last `route.decided` event of the job: the decision behind its answer."""
    return (
        LedgerEvent.objects.filter(subject_job=str(job.pk), event_type="route.decided")
        .order_by("-xact_id", "-id")
        .values_list("id", flat=True)
        .first()
    )


def policies_with_active_version() -> QuerySet[Policy]:
    return Policy.objects.filter(versions__status="active").distinct().order_by("name")


def policy_list() -> QuerySet[Policy]:
    return Policy.objects.prefetch_related("versions").order_by("name")


def policy_get(*, name: str) -> Policy | None:
    return Policy.objects.filter(name=name).first()


def policy_version_list(*, policy: Policy) -> QuerySet[PolicyVersion]:
    return policy.versions.select_related("policy", "author", "submitted_by", "activated_by").order_by("-number")


def policy_version_get(*, policy: Policy, number: int) -> PolicyVersion | None:
    return policy_version_list(policy=policy).filter(number=number).first()


def deployment_list() -> QuerySet[ModelDeployment]:
    return ModelDeployment.objects.order_by("tier", "priority", "name")


def deployment_get(*, name: str) -> ModelDeployment | None:
    return ModelDeployment.objects.filter(name=name).first()


def application_list() -> QuerySet[Application]:
    return Application.objects.order_by("name", "id")


def application_get(*, slug: str) -> Application | None:
    return Application.objects.filter(slug=slug).first()


def api_key_list(*, application: Application) -> QuerySet[ApiKey]:
    return application.api_keys.order_by("-created_at", "-id")


def api_key_get(*, application: Application, prefix: str) -> ApiKey | None:
    return application.api_keys.filter(prefix=prefix).first()
