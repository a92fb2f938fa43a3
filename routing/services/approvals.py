"""Who may decide a held job and whose approval counts: the rules the review services, the job pages and the
jobs API share. Read-only; the decisions themselves are review's (review.services)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from controlplane.roles import Role, has_role
from routing.decide.policy.rules import APPROVAL_GROUPS
from routing.models import ApprovalRequest, Job
from routing.models.approvals import DecisionKind


def requirements(request: ApprovalRequest) -> list[dict[str, Any]]:
    """What the request is decided on. A request without the list (none should exist after migration
    0009) is read from its summary columns rather than treated as needing nothing."""
    return request.requirements or [
        {"rule": "", "group": request.eligible_group, "approvers": request.required_approvers}
    ]


def in_group(user: AbstractBaseUser | AnonymousUser, group: str) -> bool:
    """Whether the user holds `group`'s role now (an inactive account holds none). A group Arbiter has no
    role for makes nobody eligible: never a fallback to some other role."""
    return group in APPROVAL_GROUPS and has_role(user, Role(group))


def submitted(user: AbstractBaseUser | AnonymousUser, job: Job) -> bool:
    return job.submitted_by_id is not None and job.submitted_by_id == user.pk


def may_decide(user: AbstractBaseUser | AnonymousUser, job: Job, request: ApprovalRequest) -> bool:
    """Eligible for at least one of the request's requirements, and not the job's submitter."""
    return not submitted(user, job) and any(in_group(user, item["group"]) for item in requirements(request))


def counted_approvers(job: Job, request: ApprovalRequest, decisions: list | None = None) -> list:
    """The distinct people whose approval counts now: active, holding at least one requirement's group
    at this moment, and not the job's submitter. Read when the request is settled, so a person
    deactivated or removed from the group since approving no longer counts. Reads `decisions.all()` so
    a caller's prefetch (or `decisions`, already loaded) is used."""
    return [
        decision.actor
        for decision in (request.decisions.all() if decisions is None else decisions)
        if decision.kind == DecisionKind.APPROVE
        and not submitted(decision.actor, job)
        and any(in_group(decision.actor, item["group"]) for item in requirements(request))
    ]


def approval_progress(job: Job, request: ApprovalRequest, decisions: list | None = None) -> list[dict[str, Any]]:
    """Per requirement, how many of the counted approvers hold its group; one person's approval counts
    towards every requirement whose group they hold."""
    approvers = counted_approvers(job, request, decisions)
    return [
        {**item, "approvals": sum(1 for person in approvers if in_group(person, item["group"]))}
        for item in requirements(request)
    ]


def progress_satisfied(progress: list[dict[str, Any]]) -> bool:
    return bool(progress) and all(item["approvals"] >= item["approvers"] for item in progress)
