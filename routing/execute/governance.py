"""Step 8 of a job's life: approval rules on the accepted result — block, hold for a human, or finish.

`govern` decides (pure, before any transaction); `GovernanceOutcome.write` records the decision inside
the transaction that also records the accepted step, so a job's last step and its outcome commit together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from audit import ledger
from routing.decide.approval_rules import evaluate_approvals
from routing.decide.policy.document import PolicyDocument
from routing.decide.policy.rules import DEFAULT_GROUP
from routing.execute import facts
from routing.execute.fencing import Claim
from routing.execute.runs import run_holds
from routing.execute.settled import job_settled_on_commit
from routing.models import ApprovalRequest, Job, JobStatus

# The rule id of a hold for a tier that is down (a policy's `tier_down: {action: hold}`): approving it
# sends the job back to the queue (review.services), since there is no answer to release.
TIER_DOWN_RULE = "tier_down"

WEBHOOK_EVENTS: dict[str, str] = {
    JobStatus.COMPLETED: "job.completed",
    JobStatus.BLOCKED: "job.blocked",
    JobStatus.AWAITING_APPROVAL: "job.approval_required",
}


@dataclass(frozen=True)
class GovernanceOutcome:
    status: str
    reason: str
    record: dict[str, Any]

    def job_fields(self, accepted_output: dict, step_index: int, tier: str, confidence: float | None) -> dict:
        now = timezone.now()
        return {
            "status": self.status,
            "status_reason": self.reason,
            "result": {"output": accepted_output, "step_index": step_index, "tier": tier},
            "final_tier": tier,
            "final_confidence": confidence,
            "finished_at": None if self.status == JobStatus.AWAITING_APPROVAL else now,
        }

    def write(
        self, *, claim: Claim, job: Job, tier: str, confidence: float | None, total_cost: Decimal, steps: int
    ) -> list[ledger.Entry]:
        """Inside the fenced transaction that set the job's status to `self.status`: writes what the
        outcome needs (an approval request) and returns its ledger events, for the caller to append
        with the step's own."""
        subject = {"job": job.pk, "application": job.application_id, "policy_version": job.policy_version_id}
        job_settled_on_commit(job, WEBHOOK_EVENTS[self.status])
        if self.status == JobStatus.BLOCKED:
            return [ledger.Entry("tool_call.blocked", claim.actor, subject, {"attempt": claim.attempt, **self.record})]
        if self.status == JobStatus.AWAITING_APPROVAL:
            holds = self.record["holds"]
            request = ApprovalRequest.objects.create(
                job_id=job.pk,
                rule_ids=[hold["rule"] for hold in holds],
                reasons=[hold["reason"] for hold in holds],
                **requirement_fields(requirements_of(holds)),
                expires_at=timezone.now() + timedelta(seconds=min(hold["expires_after_s"] for hold in holds)),
                # The strictest default wins: one rule that rejects on expiry makes the request reject.
                on_expiry="reject" if any(hold["on_expiry"] == "reject" for hold in holds) else "approve",
            )
            body = _approval_requested(claim, request, final_tier=tier, final_confidence=confidence)
            return [ledger.Entry("approval.requested", claim.actor, {**subject, "approval": request.pk}, body)]
        body = {
            "attempt": claim.attempt,
            "final_tier": tier,
            "final_confidence": confidence,
            "total_cost_usd": str(total_cost),
            "steps": steps,
        }
        return [ledger.Entry("job.completed", claim.actor, subject, body)]


def hold_for_tier_down(*, claim: Claim, job: Job, tier: str, reason: str, expires_after_s: int) -> list[ledger.Entry]:
    """Inside the fenced transaction that set the job awaiting approval: the request a person decides
    (approve: try the tier again; reject, or nobody by the deadline: rejected), and its ledger event."""
    job_settled_on_commit(job, WEBHOOK_EVENTS[JobStatus.AWAITING_APPROVAL])
    request = ApprovalRequest.objects.create(
        job_id=job.pk,
        rule_ids=[TIER_DOWN_RULE],
        reasons=[reason],
        **requirement_fields([{"rule": TIER_DOWN_RULE, "group": DEFAULT_GROUP, "approvers": 1}]),
        expires_at=timezone.now() + timedelta(seconds=expires_after_s),
        on_expiry="reject",
    )
    subject = {"job": job.pk, "application": job.application_id, "approval": request.pk}
    body = _approval_requested(claim, request, tier=tier)
    return [ledger.Entry("approval.requested", claim.actor, subject, body)]


def _approval_requested(claim: Claim, request: ApprovalRequest, **about: Any) -> dict[str, Any]:
    """The body of an `approval.requested` event: the request as reviewers must meet it, and `about` what
    was held."""
    return {
        "attempt": claim.attempt,
        "rules": request.rule_ids,
        "reasons": request.reasons,
        "required_approvers": request.required_approvers,
        "eligible_group": request.eligible_group,
        "requirements": request.requirements,
        "expires_at": request.expires_at.isoformat(),
        "on_expiry": request.on_expiry,
        **about,
    }


def requirements_of(holds: list[dict[str, Any]], *, keep: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """One requirement per rule (and group) holding the answer, each kept whole: a second rule's group is
    as binding as the first's. `keep` (an overridden request's requirements) is merged in; a rule met
    twice needs the larger number of approvers, never fewer."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for item in [*keep, *({"rule": h["rule"], "group": h["group"], "approvers": h["approvers"]} for h in holds)]:
        key = (item["rule"], item["group"])
        approvers = max(item["approvers"], merged[key]["approvers"] if key in merged else 0)
        merged[key] = {"rule": item["rule"], "group": item["group"], "approvers": approvers}
    return list(merged.values())


def requirement_fields(requirements: list[dict[str, Any]]) -> dict[str, Any]:
    """The request's columns for these requirements; the summary columns are for queues and ledger
    bodies, decisions read `requirements`."""
    return {
        "requirements": requirements,
        "required_approvers": max(item["approvers"] for item in requirements),
        "eligible_group": requirements[0]["group"],
    }


def govern(
    *,
    job: Job,
    document: PolicyDocument,
    output: dict,
    tier: str,
    confidence: float | None,
    total_cost: Decimal,
) -> GovernanceOutcome:
    result = facts.result_facts(job, output, tier, confidence, total_cost, detect=document.detects_personal_data)
    decision = evaluate_approvals(document, result)
    record = decision.to_record()
    record["holds"] = [*record["holds"], *run_holds(job)]
    if decision.blocked:
        # Each reason names its call (a name the model made up only by digest: see BlockedCall.recorded).
        reason = "; ".join(block["reason"] for block in record["blocked"])
        return GovernanceOutcome(JobStatus.BLOCKED, reason, record)
    if record["holds"]:
        return GovernanceOutcome(JobStatus.AWAITING_APPROVAL, "; ".join(h["reason"] for h in record["holds"]), record)
    return GovernanceOutcome(JobStatus.COMPLETED, "", record)
