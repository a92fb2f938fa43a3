"""Reads for the API. Every read of tenant data takes the caller's application and filters by it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Prefetch, QuerySet, Sum

from audit.models import LedgerEvent
from routing.models import (
    ApiKey,
    Application,
    ApprovalRequest,
    Job,
    ModelDeployment,
    Policy,
    PolicyVersion,
    Run,
    Step,
)
from routing.models.jobs import JobPurpose, StepOutcome

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
    "purpose",
)


def _job_detail_queryset() -> QuerySet[Job]:
    return Job.objects.select_related("policy_version__policy").prefetch_related(
        Prefetch("steps", queryset=Step.objects.select_related("deployment").order_by("attempt", "index")),
        Prefetch("approval_requests", queryset=ApprovalRequest.objects.prefetch_related("decisions")),
        "approval_grants",
    )


def steps_walked(steps: Iterable[Step]) -> list[Step]:
    """The answered steps of a job's cascade as it was finally walked, in plan order, from its recorded
    rows (no query). A later attempt (an earlier one's worker died) records only the steps it asked
    again; at an index it took from an earlier attempt's answered-and-escalated row (routing.execute.run,
    `cascade.reusable`) it records nothing. So the walk is, up to the last attempt's last step, that
    attempt's row at each index, else the latest earlier escalated row there."""
    answered = [step for step in steps if step.outcome != StepOutcome.FAILED]
    if not answered:
        return []
    attempt = max(step.attempt for step in answered)
    current = {step.index: step for step in answered if step.attempt == attempt}
    earlier: dict[int, Step] = {}
    for step in sorted(answered, key=lambda step: -step.attempt):
        if step.attempt < attempt and step.outcome == StepOutcome.ESCALATED:
            earlier.setdefault(step.index, step)
    walked = []
    for index in range(max(current) + 1):
        step = current.get(index) or earlier.get(index)
        if step is not None:
            walked.append(step)
    return walked


def job_get_for_application(*, application: Application, job_id: uuid.UUID) -> Job | None:
    # A replay is an evaluation, shown to reviewers only: to the application it does not exist.
    return (
        _job_detail_queryset()
        .filter(application=application, pk=job_id, purpose=JobPurpose.APPLICATION)
        .first()
    )


def job_just_created(job: Job) -> Job:
    """The job `job_submit` has just created, made readable as `job_get_for_application` would return it
    without reading it back (that read was a third of `POST /api/v1/jobs`): it has no steps and no approval
    requests yet, and its policy version came with its policy's name (`policy_version_for`). Its status is
    the one it was created with, even if a worker has claimed it since."""
    job._prefetched_objects_cache = {"steps": _prefetched([]), "approval_requests": _prefetched([])}
    return job


def _prefetched(rows: list[Any]) -> QuerySet[Any]:
    # What prefetch_related leaves in the cache (django.db.models.query.prefetch_one_level): a queryset
    # whose rows are already there. An empty .none() would still run the query compiler when iterated.
    rows_queryset = QuerySet()
    rows_queryset._result_cache, rows_queryset._prefetch_done = rows, True
    return rows_queryset


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
        .filter(application=application, purpose=JobPurpose.APPLICATION)
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


@dataclass(frozen=True)
class JobCompletion:
    """What a synchronous OpenAI-style answer is built from, and no more."""

    id: uuid.UUID
    status: str
    status_reason: str
    result: dict[str, Any] | None
    created_at: datetime
    final_tier: str
    escalations: int
    policy_name: str
    policy_version_number: int
    policy_version_sha256: str
    steps: list[dict[str, Any]]  # attempt, index, outcome, model, prompt_tokens, completion_tokens
    decision_event_id: int | None  # the last route.decided event: the decision behind the answer
    purpose: str  # read by the release gate (routing.release), like a Job's
    grants: list[dict[str, Any]]  # message, signature, redeemed_at of each approval grant, in tool-call order
    run_id: uuid.UUID | None = None  # the agent run it belongs to

    @property
    def pk(self) -> uuid.UUID:
        return self.id


_COMPLETION = """
    SELECT j.id, j.status, j.status_reason, j.result, j.created_at, j.final_tier, j.escalations,
           p.name, v.number, v.sha256,
           (SELECT coalesce(json_agg(json_build_object(
                       'attempt', s.attempt, 'index', s.index, 'outcome', s.outcome, 'model', s.model,
                       'prompt_tokens', s.prompt_tokens, 'completion_tokens', s.completion_tokens)
                   ORDER BY s.attempt, s.index), '[]')
              FROM routing_step s WHERE s.job_id = j.id),
           (SELECT e.id FROM audit_ledgerevent e
             WHERE e.subject_job = j.id::text AND e.event_type = 'route.decided'
             ORDER BY e.xact_id DESC, e.id DESC LIMIT 1),
           j.purpose,
           (SELECT coalesce(json_agg(json_build_object(
                       'message', g.message, 'signature', g.signature, 'redeemed_at', g.redeemed_at)
                   ORDER BY g.tool_call_index), '[]')
              FROM routing_approvalgrant g WHERE g.job_id = j.id),
           j.run_id
      FROM routing_job j
      JOIN routing_policyversion v ON v.id = j.policy_version_id
      JOIN routing_policy p ON p.id = v.policy_id
     WHERE j.id = %s AND j.application_id = %s AND j.purpose = 'application'
"""


def job_completion_for_application(*, application: Application, job_id: uuid.UUID) -> JobCompletion | None:
    # One statement, written out: the synchronous endpoint reads this for every request it answers, and
    # the ORM's version of it (a job with its version, policy, steps and decision) cost ten times the CPU.
    with connection.cursor() as cursor:
        cursor.execute(_COMPLETION, [job_id, application.pk])
        row = cursor.fetchone()
    if row is None:
        return None
    # Django's connection hands JSON columns back as text (JSONField decodes them itself).
    return JobCompletion(*row[:3], _json(row[3]), *row[4:10], _json(row[10]), row[11], row[12], _json(row[13]), row[14])


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


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
    return application.api_keys.select_related("created_by").order_by("-created_at", "-id")


def api_key_get(*, application: Application, prefix: str) -> ApiKey | None:
    return application.api_keys.select_related("created_by").filter(prefix=prefix).first()


def job_upstream_refusal_status(job_id: uuid.UUID) -> int | None:
    """The provider's status when a failed job's request was refused by the provider itself (a 400...:
    routing.execute.calls.TierUnavailable.request_refused), from its `job.failed` event; else None."""
    event = LedgerEvent.objects.filter(subject_job=str(job_id), event_type="job.failed").order_by("-id").first()
    body = event.body if event is not None else None
    status = body.get("upstream_status") if isinstance(body, dict) else None
    return status if isinstance(status, int) else None


def run_get_for_application(*, application: Application, run_id: uuid.UUID) -> Run | None:
    return Run.objects.filter(application=application, pk=run_id).first()


def run_jobs(*, run: Run) -> QuerySet[Job]:
    """The run's calls, oldest first; a reviewer's replay of one is an evaluation, never part of it."""
    return (
        Job.objects.filter(run=run, purpose=JobPurpose.APPLICATION)
        .select_related("policy_version__policy")
        .order_by("created_at", "id")
    )


def run_cost(*, run: Run) -> Decimal:
    """What the run's steps cost, every attempt's included."""
    return Step.objects.filter(job__run=run).aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)
