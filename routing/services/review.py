"""What reviewers do to a held job: approve, reject, override, escalate; and replay, expire.

The UI and the API call these same services. Each decision is one transaction that locks the job,
checks the reviewer's expectation of its version (optimistic locking: two reviewers acting at once —
one wins, the other is told), writes the decision and its ledger event, and moves the job on.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import ledger, payloads
from audit.ledger import Actor
from controlplane.roles import Role, has_role
from routing.models import ApprovalDecision, ApprovalRequest, Job, JobStatus, PolicyVersion, Step
from routing.models.approvals import ApprovalStatus, DecisionKind
from routing.services.jobs import dispatch_after_commit, job_submit
from routing.settled import job_settled_on_commit
from routing.tiers import TIER_NAMES, tier_rank


class ReviewError(Exception):
    """The decision cannot be taken; the message is for the reviewer."""


class StaleReview(ReviewError):
    """Someone acted on this job since the reviewer loaded it."""


def _locked_request(job: Job, expected_version: int | None) -> tuple[Job, ApprovalRequest]:
    locked = Job.objects.select_for_update().get(pk=job.pk)
    if expected_version is not None and locked.version != expected_version:
        raise StaleReview("another reviewer acted on this job while you were looking at it; reload to see what changed")
    request = locked.approval_requests.select_for_update().filter(status=ApprovalStatus.PENDING).first()
    if locked.status != JobStatus.AWAITING_APPROVAL or request is None:
        raise StaleReview(f"this job is {locked.get_status_display()}, not awaiting approval")
    return locked, request


def _check_reviewer(user: AbstractBaseUser, job: Job, request: ApprovalRequest) -> None:
    try:
        group = Role(request.eligible_group)
    except ValueError:
        group = Role.REVIEWER  # a group the policy names but Arbiter has no role for: reviewers decide
    if not has_role(user, group):
        raise ReviewError(f"only members of {request.eligible_group!r} may decide this approval")
    if job.submitted_by_id is not None and job.submitted_by_id == user.pk:
        raise ReviewError("you submitted this job; someone else must decide its approval")


def _record(request: ApprovalRequest, user, kind: str, reason: str, override: dict | None = None) -> ApprovalDecision:
    try:
        with transaction.atomic():
            return ApprovalDecision.objects.create(
                request=request, actor=user, kind=kind, reason=reason, override=override
            )
    except IntegrityError:
        raise ReviewError(
            "you have already decided on this approval; a second approval must come from someone else"
        ) from None


def _event(kind: str, job: Job, request: ApprovalRequest, user, body: dict[str, Any]) -> None:
    ledger.append(
        f"approval.{kind}",
        actor=Actor.user(user.pk),
        subject={"job": job.pk, "application": job.application_id, "approval": request.pk},
        body=body,
    )


def _close(job: Job, request: ApprovalRequest, *, job_status: str, request_status: str, reason: str = "") -> None:
    now = timezone.now()
    request.status = request_status
    request.resolved_at = now
    request.save(update_fields=["status", "resolved_at"])
    job.status = job_status
    job.status_reason = reason
    job.finished_at = now if job_status != JobStatus.QUEUED else None
    job.version += 1
    job.save(update_fields=["status", "status_reason", "finished_at", "version", "result", "constraints"])
    if job_status != JobStatus.QUEUED:
        job_settled_on_commit(job, f"job.{job_status}")


def approval_approve(*, job: Job, user, reason: str = "", expected_version: int | None = None) -> Job:
    with transaction.atomic():
        locked, request = _locked_request(job, expected_version)
        _check_reviewer(user, locked, request)
        _record(request, user, DecisionKind.APPROVE, reason)
        approvals = request.decisions.filter(kind=DecisionKind.APPROVE).count()
        done = approvals >= request.required_approvers
        _event(
            "approved",
            locked,
            request,
            user,
            {"reason": reason, "approvals": approvals, "required": request.required_approvers, "final": done},
        )
        if done:
            _close(locked, request, job_status=JobStatus.COMPLETED, request_status=ApprovalStatus.APPROVED)
            ledger.append(
                "job.completed",
                actor=Actor.user(user.pk),
                subject={"job": locked.pk, "application": locked.application_id},
                body={"by": "approval", "approval": request.pk},
            )
        else:
            locked.version += 1
            locked.save(update_fields=["version"])
    return locked


def approval_reject(*, job: Job, user, reason: str, expected_version: int | None = None) -> Job:
    if not reason.strip():
        raise ReviewError("a rejection needs a reason")
    with transaction.atomic():
        locked, request = _locked_request(job, expected_version)
        _check_reviewer(user, locked, request)
        _record(request, user, DecisionKind.REJECT, reason)
        _event("rejected", locked, request, user, {"reason": reason})
        _close(
            locked,
            request,
            job_status=JobStatus.REJECTED,
            request_status=ApprovalStatus.REJECTED,
            reason=reason,
        )
    return locked


def approval_override(
    *,
    job: Job,
    user,
    reason: str,
    output: dict[str, Any] | None = None,
    step_id: int | None = None,
    expected_version: int | None = None,
) -> Job:
    """Replace the job's result with an edited output, or with another step's output."""
    if not reason.strip():
        raise ReviewError("an override needs a reason")
    if (output is None) == (step_id is None):
        raise ReviewError("give either an edited output or the step whose output to take")
    with transaction.atomic():
        locked, request = _locked_request(job, expected_version)
        _check_reviewer(user, locked, request)
        previous = locked.result
        if step_id is not None:
            step = Step.objects.filter(job=locked, pk=step_id, output__isnull=False).first()
            if step is None:
                raise ReviewError("that step does not belong to this job or has no output")
            output = step.output
            new_result = {"output": output, "step_index": step.index, "tier": step.tier, "overridden": True}
        else:
            new_result = {"output": output, "overridden": True, "tier": (previous or {}).get("tier")}
        locked.result = new_result
        _record(request, user, DecisionKind.OVERRIDE, reason, override={"output": output, "step": step_id})
        # The edit itself stays only in the decision row and the job's result (erasable columns); the
        # ledger gets digests of the redacted before and after, kept in the payload store.
        subject = {"job": locked.pk, "application": locked.application_id, "approval": request.pk}
        before = payloads.store(previous, kind="result", subject=subject) if previous is not None else None
        after = payloads.store(new_result, kind="override", subject=subject)
        body = {"reason": reason, "before": before, "after": after, "step": step_id}
        _event("overridden", locked, request, user, body)
        _close(
            locked,
            request,
            job_status=JobStatus.COMPLETED,
            request_status=ApprovalStatus.OVERRIDDEN,
            reason=reason,
        )
    return locked


def approval_escalate(*, job: Job, user, reason: str = "", expected_version: int | None = None) -> Job:
    """Re-run the job from the tier above the one that answered."""
    with transaction.atomic():
        locked, request = _locked_request(job, expected_version)
        _check_reviewer(user, locked, request)
        current = tier_rank(locked.final_tier) or 0
        if current + 1 >= len(TIER_NAMES):
            raise ReviewError("the answer already came from the highest tier")
        next_tier = TIER_NAMES[current + 1]
        _record(request, user, DecisionKind.ESCALATE, reason)
        locked.constraints = {**locked.constraints, "min_tier": next_tier}
        _event("escalated", locked, request, user, {"reason": reason, "to_tier": next_tier})
        _close(locked, request, job_status=JobStatus.QUEUED, request_status=ApprovalStatus.ESCALATED)
        locked.dispatched_at = timezone.now()
        locked.save(update_fields=["dispatched_at"])
        dispatch_after_commit(locked)
    return locked


def approvals_expire_due(*, limit: int = 200) -> int:
    """Apply each overdue approval request's default (beat)."""
    now = timezone.now()
    due = list(
        ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING, expires_at__lte=now).values_list(
            "job_id", flat=True
        )[:limit]
    )
    expired = 0
    for job_id in due:
        with transaction.atomic():
            locked = Job.objects.select_for_update().get(pk=job_id)
            request = locked.approval_requests.select_for_update().filter(status=ApprovalStatus.PENDING).first()
            if request is None or request.expires_at > now:
                continue
            approve = request.on_expiry == "approve"
            _close(
                locked,
                request,
                job_status=JobStatus.COMPLETED if approve else JobStatus.EXPIRED,
                request_status=ApprovalStatus.EXPIRED,
                reason=f"approval deadline passed; default: {request.on_expiry}",
            )
            ledger.append(
                "approval.expired",
                actor=Actor.system("approval-deadline"),
                subject={"job": locked.pk, "application": locked.application_id, "approval": request.pk},
                body={"on_expiry": request.on_expiry, "expires_at": request.expires_at.isoformat()},
            )
            expired += 1
    return expired


def job_replay(*, job: Job, user, policy_version: PolicyVersion | None = None) -> Job:
    """A new job linked to the original, under the same or another policy version; the original stays."""
    version = policy_version or job.policy_version
    request = job.request
    replay, _ = job_submit(
        application=job.application,
        task_type=job.task_type,
        messages=request["messages"],
        tools=request.get("tools"),
        response_format=request.get("response_format"),
        labels=job.labels,
        constraints=job.constraints,
        metadata={**job.metadata, "replay_of": str(job.pk)},
        actor=Actor.user(user.pk),
        policy_version=version,
        replay_of=job,
        submitted_by=user,
    )
    return replay
