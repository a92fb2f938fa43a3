"""The release gate: what of a job the application may read, decided in one place.

A model's answer reaches the application only when the job is the application's own (not a reviewer's
replay, which is an evaluation) and it is completed — reachable only through a governance pass, the
approvals the policy requires, an override those approvals confirmed, or the policy's explicit
`on_expiry: approve`. Every application-facing reader (the jobs API, the OpenAI-compatible endpoint,
webhooks, a job's ledger events) goes through these functions, so a path added later inherits the rule
by calling them rather than by re-deriving it.

Held, blocked and rejected answers also leak through their *reasons* ("tool call #0 'issue_refund':
args.amount is 5000, > 100") and through ledger bodies (an override's before/after, a hold's reasons).
The application sees rule ids and a generic reason, never values taken from the model's answer.
"""

from __future__ import annotations

from typing import Any

from routing.models import Job, JobStatus
from routing.models.jobs import JobPurpose

# Why the application cannot read a result yet (or ever), by job status.
# Keyed by the status's value: a job's `status` is the plain string the database holds.
WITHHELD_BY_STATUS: dict[str, str] = {
    JobStatus.QUEUED: "not_finished",
    JobStatus.RUNNING: "not_finished",
    JobStatus.AWAITING_APPROVAL: "awaiting_approval",
    JobStatus.BLOCKED: "blocked",
    JobStatus.REJECTED: "rejected",
    JobStatus.EXPIRED: "expired",
    JobStatus.CANCELLED: "cancelled",
    JobStatus.FAILED: "failed",
}
WITHHELD_EVALUATION = "evaluation"

# What the application is told instead of a reason that may quote the answer.
GENERIC_REASONS: dict[str, str] = {
    JobStatus.AWAITING_APPROVAL: "held for human approval by the policy's approval rules; "
    "the answer is not released until the required reviewers decide",
    JobStatus.BLOCKED: "a tool call in the answer is not allowed by the policy; the answer is never released",
    JobStatus.REJECTED: "rejected by a reviewer; the answer is never released",
}
OVERRIDDEN_REASON = "the answer was edited by reviewers and approved"
EXPIRY_REASON = "approval deadline passed; default: {on_expiry}"


def is_application_job(job: Job) -> bool:
    return job.purpose == JobPurpose.APPLICATION


def is_released(job: Job) -> bool:
    return is_application_job(job) and job.status == JobStatus.COMPLETED


def released_result(job: Job) -> dict[str, Any] | None:
    """The result the application may read: the whole result once released, else nothing."""
    if not is_released(job) or job.result is None:
        return None
    return dict(job.result)


def released_output(job: Job) -> dict[str, Any] | None:
    result = released_result(job)
    return None if result is None else result.get("output")


def result_withheld(job: Job) -> str | None:
    """Why the application gets no result (a stable code for clients), or None when it is released."""
    if not is_application_job(job):
        return WITHHELD_EVALUATION
    if job.status == JobStatus.COMPLETED:
        return None
    return WITHHELD_BY_STATUS.get(job.status, "not_released")


def released_status_reason(job: Job) -> str:
    """The status reason the application may read. Holds, blocks, rejections and override reasons are
    written from the answer (tool names, argument values) or by reviewers about it: generic text."""
    if job.status in GENERIC_REASONS:
        return GENERIC_REASONS[job.status]
    if job.status == JobStatus.COMPLETED:
        # Written by the services as one of these; anything else is an older override's own reason.
        known = ("", OVERRIDDEN_REASON, EXPIRY_REASON.format(on_expiry="approve"))
        return job.status_reason if job.status_reason in known else OVERRIDDEN_REASON
    return job.status_reason


STEP_ERROR_WITHHELD = "withheld until the answer is released"


def released_step_error(job: Job, step: Any) -> str:
    """A step's error as the application may read it. A step's error can be written from the model's
    answer (its tool-call schema violations, a provider's message quoting it), so it is shown only once
    the job's answer is released; before that, and for ever on jobs that are never released, only
    whether there was one."""
    if not step.error or is_released(job):
        return step.error
    return STEP_ERROR_WITHHELD


def released_approval_reasons(rule_ids: list[str]) -> list[str]:
    """An approval's reasons as the application sees them: the rule, never the values that matched it."""
    return [f"approval rule {rule_id!r} holds this answer" for rule_id in rule_ids]


# Ledger body keys that never carry the model's answer, a reason written from it or a reviewer's
# edit: the application reads only these. Allow-listed rather than deny-listed so that a key added to
# an event later is withheld until someone decides it is safe.
RELEASABLE_BODY_KEYS = frozenset(
    {
        # job.submitted: the application's own request, by digest and labels
        "task_type", "prompt", "request_sha256", "labels", "constraints", "policy_version_sha256",
        "replay_of", "input_tokens", "purpose",
        # route.decided, budget events
        "plan", "explanation", "complexity", "budget", "error", "rule_id", "attempt", "policy_sha256",
        "spend_usd", "soft_limit_usd", "hard_limit_usd",
        # model.called, confidence.scored, job.escalated (the output digest and scorer detail are not here)
        "index", "tier", "deployment", "model", "provider_request_id", "prompt_tokens", "completion_tokens",
        "cost_usd", "latency_ms", "method", "score", "threshold", "met", "from_tier", "cost_so_far_usd",
        # governance and decisions: rule ids and counts, no reasons, before/after or holds
        "outcome", "rules", "required_approvers", "eligible_group", "expires_at", "on_expiry",
        "final_tier", "final_confidence", "approvals", "required", "requirements", "final", "to_tier", "by", "approval",
        "total_cost_usd", "steps", "from_status",
        # job.failed: the provider's status when it refused the request itself (routing.execute.calls)
        "upstream_status",
        # approval grants (issued only with a released answer): which grant, which call, a refusal's code
        "grant", "tool_call_id", "tool", "arguments_sha256", "code",
        # shadow comparisons
        "confidence", "shadow_tier", "shadow_deployment", "agreement", "shadow_cost_usd",
    }
)


def released_ledger_body(event_type: str, body: dict[str, Any]) -> dict[str, Any]:
    """A ledger event's body as the application may read it; `withheld` names the keys left out."""
    shown = {key: value for key, value in body.items() if key in RELEASABLE_BODY_KEYS}
    if event_type == "tool_call.blocked":
        shown["rules"] = [hold.get("rule") for hold in body.get("holds") or []]
        shown["blocked_tool_calls"] = len(body.get("blocked") or [])
    withheld = sorted(set(body) - set(shown))
    if withheld:
        shown["withheld"] = withheld
    return shown
