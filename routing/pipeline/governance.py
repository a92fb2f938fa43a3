"""Step 8 of a job's life: approval rules on the accepted result. Block, hold for a human, or finish."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.utils import timezone

from audit import ledger
from routing import metrics
from routing.approval_rules import evaluate_approvals
from routing.models import ApprovalRequest, Job, JobStatus
from routing.pipeline import facts
from routing.pipeline.fencing import Claim, fenced

if TYPE_CHECKING:
    from routing.pipeline.execute import StepRecord
    from routing.policy.document import PolicyDocument


def job_govern(
    *,
    claim: Claim,
    job: Job,
    document: PolicyDocument,
    accepted: StepRecord,
    steps: list[StepRecord],
    total_cost: Decimal,
) -> None:
    result_facts = facts.result_facts(job, accepted, total_cost)
    decision = evaluate_approvals(document, result_facts)
    record = decision.to_record()
    now = timezone.now()
    with fenced(claim) as locked:
        locked.result = {"output": accepted.output, "step_index": accepted.index, "tier": accepted.tier}
        locked.final_tier = accepted.tier
        locked.final_confidence = accepted.confidence
        locked.finished_at = None
        locked.lease_expires_at = None
        locked.version += 1
        subject = {
            "job": locked.pk,
            "application": locked.application_id,
            "policy_version": locked.policy_version_id,
        }
        if decision.blocked:
            locked.status = JobStatus.BLOCKED
            locked.status_reason = "; ".join(
                f"{block['tool']}: {block['reason']}" for block in record["blocked"]
            )
            locked.finished_at = now
            ledger.append(
                "tool_call.blocked",
                actor=claim.actor,
                subject=subject,
                body={"attempt": claim.attempt, **record},
            )
        elif decision.holds:
            holds = record["holds"]
            expires_after = min(hold["expires_after_s"] for hold in holds)
            request = ApprovalRequest.objects.create(
                job=locked,
                rule_ids=[hold["rule"] for hold in holds],
                reasons=[hold["reason"] for hold in holds],
                required_approvers=max(hold["approvers"] for hold in holds),
                eligible_group=holds[0]["group"],
                expires_at=now + timedelta(seconds=expires_after),
                # The strictest default wins: one rule that rejects on expiry makes the request reject.
                on_expiry="reject" if any(hold["on_expiry"] == "reject" for hold in holds) else "approve",
            )
            locked.status = JobStatus.AWAITING_APPROVAL
            locked.status_reason = "; ".join(request.reasons)
            ledger.append(
                "approval.requested",
                actor=claim.actor,
                subject={**subject, "approval": request.pk},
                body={
                    "attempt": claim.attempt,
                    "rules": request.rule_ids,
                    "reasons": request.reasons,
                    "required_approvers": request.required_approvers,
                    "eligible_group": request.eligible_group,
                    "expires_at": request.expires_at.isoformat(),
                    "on_expiry": request.on_expiry,
                    "final_tier": accepted.tier,
                    "final_confidence": accepted.confidence,
                },
            )
        else:
            locked.status = JobStatus.COMPLETED
            locked.status_reason = ""
            locked.finished_at = now
            ledger.append(
                "job.completed",
                actor=claim.actor,
                subject=subject,
                body={
                    "attempt": claim.attempt,
                    "final_tier": accepted.tier,
                    "final_confidence": accepted.confidence,
                    "total_cost_usd": str(total_cost),
                    "steps": len(steps),
                },
            )
        locked.save()
    metrics.JOBS_FINISHED.labels(locked.status, locked.task_type).inc()
