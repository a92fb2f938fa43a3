"""A job whose last tier is down (every deployment failing or behind its breaker), as its policy's `tier_down`
says: `hold` it for a person, or `wait` for the breakers' cooldown and send it again, until a deadline. (`fail`,
the default, is the runner's ordinary failure.) Written inside the runner's fenced transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit import ledger
from routing.decide.policy.document import PolicyDocument
from routing.execute import dispatch
from routing.execute.calls import TierUnavailable
from routing.execute.fencing import Claim
from routing.execute.governance import hold_for_tier_down
from routing.models import Job


@dataclass(frozen=True)
class TierWait:
    retry_in_s: float
    retry_at: datetime
    deadline: datetime


def tier_wait(job: Job, document: PolicyDocument, unavailable: TierUnavailable) -> TierWait | None:
    """When the breakers let a probe through before the job's deadline (`wait_up_to` after it started):
    when to try again. None: too late, the job fails."""
    now = timezone.now()
    deadline = (job.started_at or now) + timedelta(seconds=document.tier_down.wait_up_to_s)
    retry_in_s = max(1.0, unavailable.retry_in_s())
    retry_at = now + timedelta(seconds=retry_in_s)
    if retry_at >= deadline:
        return None
    return TierWait(retry_in_s, retry_at, deadline)


def held_reason(tier: str) -> str:
    return f"tier {tier} is down: held for a person (approve to try it again, reject to end the job)"


def record_tier_wait(
    claim: Claim, job: Job, tier: str, document: PolicyDocument, wait: TierWait | None, subject: dict[str, Any]
) -> None:
    """The job waits for its tier: for a person (`wait` None: the policy holds it), or for the breakers'
    cooldown, when it is sent again on the recovery queue. Its `job.waiting` event also tells the attempt
    cap that this attempt did not die (routing.execute.run)."""
    waiting: dict[str, Any] = {"attempt": claim.attempt, "tier": tier, "reason": "tier_down"}
    if wait is None:
        expires = document.tier_down.wait_up_to_s
        hold = hold_for_tier_down(claim=claim, job=job, tier=tier, reason=held_reason(tier), expires_after_s=expires)
        ledger.append_many([ledger.Entry("job.waiting", claim.actor, subject, waiting | {"action": "hold"}), *hold])
        return
    waiting |= {"action": "wait", "retry_at": wait.retry_at.isoformat(), "deadline": wait.deadline.isoformat()}
    ledger.append("job.waiting", actor=claim.actor, subject=subject, body=waiting)
    transaction.on_commit(
        lambda: dispatch.send_recovery(dispatch.EXECUTE_JOB, str(job.pk), countdown=wait.retry_in_s), robust=True
    )
