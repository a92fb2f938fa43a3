"""What reviewers do to a held job: approve, reject, override, escalate; and replay, expire.

The UI (review.queue, review.actions) and the REST API (review.api) call these same services. Each
decision is one transaction that locks the job,
checks the reviewer's expectation of its version (optimistic locking: two reviewers acting at once —
one wins, the other is told), writes the decision and its ledger event, and moves the job on.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, User
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import ledger, payloads
from audit.ledger import Actor
from routing.decide.tiers import TIER_NAMES, tier_rank
from routing.execute.facts import document_for
from routing.execute.governance import TIER_DOWN_RULE, govern, requirement_fields, requirements_of
from routing.execute.settled import job_settled_on_commit
from routing.models import ApprovalDecision, ApprovalRequest, Job, JobStatus, PolicyVersion, Step
from routing.models.approvals import ApprovalStatus, DecisionKind
from routing.models.jobs import JobPurpose
from routing.release import EXPIRY_REASON, OVERRIDDEN_REASON
from routing.services.approvals import (
    approval_progress,
    counted_approvers,
    may_decide,
    progress_satisfied,
    requirements,
    submitted,
)
from routing.services.grants import grants_issue
from routing.services.jobs import dispatch_after_commit, job_submit


class ReviewError(Exception):
    """The decision cannot be taken; the message is for the reviewer, `code` for a client (the API)."""

    code = "review_refused"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class StaleReview(ReviewError):
    """Someone acted on this job since the reviewer loaded it (or it is no longer held)."""

    code = "stale_version"


class NotEligible(ReviewError):
    """This person may not take this decision: their own job, not in a requirement's group, or decided."""

    code = "not_eligible"


def _locked_request(job: Job, expected_version: int | None) -> tuple[Job, ApprovalRequest]:
    locked = Job.objects.select_for_update().get(pk=job.pk)
    if expected_version is not None and locked.version != expected_version:
        raise StaleReview("another reviewer acted on this job while you were looking at it; reload to see what changed")
    request = locked.approval_requests.select_for_update().filter(status=ApprovalStatus.PENDING).first()
    if locked.status != JobStatus.AWAITING_APPROVAL or request is None:
        raise StaleReview(f"this job is {locked.get_status_display()}, not awaiting approval", code="not_held")
    return locked, request


def _check_reviewer(user: AbstractBaseUser, job: Job, request: ApprovalRequest) -> None:
    """Who may act on the request at all. Approvals only count towards requirements whose group the
    person holds (approval_progress); reject and escalate are fail-safe (nothing is released), so any
    person eligible for any requirement may take them."""
    if submitted(user, job):
        raise NotEligible("you submitted this job; someone else must decide its approval", code="own_job")
    if not may_decide(user, job, request):
        groups = ", ".join(dict.fromkeys(repr(item["group"]) for item in requirements(request)))
        raise NotEligible(f"only members of {groups} may decide this approval", code="not_in_group")


def _record(
    request: ApprovalRequest, user: User, kind: str, reason: str, override: dict | None = None
) -> ApprovalDecision:
    try:
        with transaction.atomic():
            return ApprovalDecision.objects.create(
                request=request, actor=user, kind=kind, reason=reason, override=override
            )
    except IntegrityError:
        raise NotEligible(
            "you have already decided on this approval; a second approval must come from someone else",
            code="already_decided",
        ) from None


def _event(kind: str, job: Job, request: ApprovalRequest, user: User, body: dict[str, Any]) -> None:
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


def approval_approve(*, job: Job, user: User, reason: str = "", expected_version: int | None = None) -> Job:
    with transaction.atomic():
        locked, request = _locked_request(job, expected_version)
        _check_reviewer(user, locked, request)
        _approve(locked, request, user, reason)
    return locked


def _approve(job: Job, request: ApprovalRequest, user: User, reason: str) -> None:
    """One distinct person's approval, counted towards every requirement whose group they hold; the job
    completes once every requirement has as many eligible approvers as it needs."""
    _record(request, user, DecisionKind.APPROVE, reason)
    progress = approval_progress(job, request)
    done = progress_satisfied(progress)
    _event(
        "approved",
        job,
        request,
        user,
        {
            "reason": reason,
            "approvals": len(counted_approvers(job, request)),
            "required": request.required_approvers,
            "requirements": progress,
            "final": done,
        },
    )
    if done and TIER_DOWN_RULE in request.rule_ids:
        # A hold for a tier that was down has no answer to release: approving it tries the job again.
        _close(job, request, job_status=JobStatus.QUEUED, request_status=ApprovalStatus.APPROVED)
        job.dispatched_at = timezone.now()
        job.save(update_fields=["dispatched_at"])
        ledger.append(
            "job.requeued",
            actor=Actor.user(user.pk),
            subject={"job": job.pk, "application": job.application_id, "approval": request.pk},
            body={"reason": TIER_DOWN_RULE},
        )
        dispatch_after_commit(job)
    elif done:
        overridden = bool((job.result or {}).get("overridden"))
        _close(
            job,
            request,
            job_status=JobStatus.COMPLETED,
            request_status=ApprovalStatus.APPROVED,
            reason=OVERRIDDEN_REASON if overridden else "",
        )
        ledger.append(
            "job.completed",
            actor=Actor.user(user.pk),
            subject={"job": job.pk, "application": job.application_id},
            body={"by": "override" if overridden else "approval", "approval": request.pk},
        )
        # The released tool calls' grants, in this same transaction: no answer is released without them.
        grants_issue(job=job, request=request, approvers=counted_approvers(job, request), actor=Actor.user(user.pk))
    else:
        job.version += 1
        job.save(update_fields=["version", "result"])


def approval_reject(*, job: Job, user: User, reason: str, expected_version: int | None = None) -> Job:
    if not reason.strip():
        raise ReviewError("a rejection needs a reason", code="reason_required")
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
    user: User,
    reason: str,
    output: dict[str, Any] | None = None,
    step_id: int | None = None,
    expected_version: int | None = None,
) -> Job:
    """Propose an edited output, or another step's output, in place of the held one.

    An override is a decision like an approval, not a way around one: the proposed output is governed
    again by the job's policy version (an output the policy blocks is refused), the pending request is
    closed as overridden and a new one opened for the proposed output, needing as many distinct eligible
    people as the old request or any rule the proposal now triggers. The overriding reviewer is its first
    approval; the job completes with the proposal only once enough others approve it (approval_approve).
    """
    if not reason.strip():
        raise ReviewError("an override needs a reason", code="reason_required")
    if (output is None) == (step_id is None):
        raise ReviewError("give either an edited output or the step whose output to take", code="invalid_override")
    if output is not None:
        _check_output(output)
    with transaction.atomic():
        locked, request = _locked_request(job, expected_version)
        _check_reviewer(user, locked, request)
        previous = locked.result
        proposed, holds = _governed_proposal(locked, output, step_id)
        output = proposed["output"]
        _record(request, user, DecisionKind.OVERRIDE, reason, override={"output": output, "step": step_id})
        request.status = ApprovalStatus.OVERRIDDEN
        request.resolved_at = timezone.now()
        request.save(update_fields=["status", "resolved_at"])
        proposal = _proposal_request(locked, request, holds)
        # The edit stays in the decision row and the job's result (erasable
        # columns); the ledger gets digests of the redacted before and after, kept in the payload store.
        subject = {"job": locked.pk, "application": locked.application_id, "approval": request.pk}
        before = payloads.store(previous, kind="result", subject=subject) if previous is not None else None
        after = payloads.store(proposed, kind="override", subject=subject)
        body = {"reason": reason, "before": before, "after": after, "step": step_id, "approval": proposal.pk}
        _event("overridden", locked, request, user, body)
        ledger.append(
            "approval.requested",
            actor=Actor.user(user.pk),
            subject={"job": locked.pk, "application": locked.application_id, "approval": proposal.pk},
            body={
                "by": "override",
                "overridden_approval": request.pk,
                "rules": proposal.rule_ids,
                "reasons": proposal.reasons,
                "required_approvers": proposal.required_approvers,
                "eligible_group": proposal.eligible_group,
                "requirements": proposal.requirements,
                "expires_at": proposal.expires_at.isoformat(),
                "on_expiry": proposal.on_expiry,
            },
        )
        locked.result = proposed
        _approve(locked, proposal, user, reason)
    return locked


def _governed_proposal(job: Job, output: dict | None, step_id: int | None) -> tuple[dict, list[dict[str, Any]]]:
    """The proposed result and the holds the job's policy version puts on it, by the pipeline's own
    governance; refused when the policy blocks it (no number of approvers can lift a block)."""
    tier, confidence = job.final_tier, job.final_confidence
    if step_id is not None:
        step = Step.objects.filter(job=job, pk=step_id, output__isnull=False).first()
        if step is None or step.output is None:
            raise ReviewError("that step does not belong to this job or has no output", code="unknown_step")
        stored: dict[str, Any] = step.output  # the JSON object the pipeline stored
        output, tier, confidence = stored, step.tier, step.confidence
        proposed = {"output": output, "step_index": step.index, "tier": step.tier, "overridden": True}
    elif output is not None:
        proposed = {"output": output, "overridden": True, "tier": (job.result or {}).get("tier")}
    else:
        raise ReviewError("give either an edited output or the step whose output to take")
    outcome = govern(
        job=job,
        document=document_for(job.policy_version),
        output=output,
        tier=tier,
        confidence=confidence,
        total_cost=job.total_cost_usd,
    )
    if outcome.status == JobStatus.BLOCKED:
        raise ReviewError(
            f"the policy blocks this output, so no override can release it: {outcome.reason}", code="blocked_by_policy"
        )
    return proposed, outcome.record["holds"]


def _check_output(output: object) -> None:
    """An edited output has the shape the pipeline produces; anything else cannot be governed."""
    if not isinstance(output, dict):
        raise ReviewError("the edited output must be an object with `content` and `tool_calls`", code="invalid_output")
    if output.get("content") is not None and not isinstance(output["content"], str):
        raise ReviewError("the edited output's `content` must be text", code="invalid_output")
    calls = output.get("tool_calls") or []
    if not isinstance(calls, list) or not all(
        isinstance(call, dict) and isinstance(call.get("name"), str) and isinstance(call.get("arguments"), dict | str)
        for call in calls
    ):
        raise ReviewError(
            "each edited tool call needs a `name` (text) and `arguments` (an object)", code="invalid_output"
        )


def _proposal_request(job: Job, overridden: ApprovalRequest, holds: list[dict[str, Any]]) -> ApprovalRequest:
    """The approval request for an override's proposed output. It needs the old request's approvers or
    more (a rule the proposal now triggers), never fewer; its deadline is the old one's or sooner; and it
    rejects on expiry: a proposal nobody confirmed is never released by a deadline passing."""
    expires_at = overridden.expires_at
    if holds:
        expires_at = min(expires_at, timezone.now() + timedelta(seconds=min(h["expires_after_s"] for h in holds)))
    return ApprovalRequest.objects.create(
        job_id=job.pk,
        rule_ids=list(dict.fromkeys([*overridden.rule_ids, *(hold["rule"] for hold in holds)])),
        reasons=["a reviewer's override proposes this output", *(hold["reason"] for hold in holds)],
        **requirement_fields(requirements_of(holds, keep=requirements(overridden))),
        expires_at=expires_at,
        on_expiry="reject",
    )


def approval_escalate(*, job: Job, user: User, reason: str = "", expected_version: int | None = None) -> Job:
    """Re-run the job from the tier above the one that answered."""
    with transaction.atomic():
        locked, request = _locked_request(job, expected_version)
        _check_reviewer(user, locked, request)
        current = tier_rank(locked.final_tier) or 0
        if current + 1 >= len(TIER_NAMES):
            raise ReviewError("the answer already came from the highest tier", code="highest_tier")
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
                reason=EXPIRY_REASON.format(on_expiry=request.on_expiry),
            )
            ledger.append(
                "approval.expired",
                actor=Actor.system("approval-deadline"),
                subject={"job": locked.pk, "application": locked.application_id, "approval": request.pk},
                body={"on_expiry": request.on_expiry, "expires_at": request.expires_at.isoformat()},
            )
            expired += 1
    return expired


def job_replay(*, job: Job, user: User, policy_version: PolicyVersion | None = None) -> Job:
    """A new job linked to the original, under the same or another policy version; the original stays.

    A replay is an evaluation: whatever version it runs under (a draft without approval rules
    included), its answer is shown to reviewers beside the original and never released to the
    application, which cannot read, list or be told about it. The original is decided on itself."""
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
        purpose=JobPurpose.EVALUATION,
    )
    return replay
