"""Which held jobs a person reaches in review: the job pages and the review API share these rules.

A job reader (reviewer, auditor) reaches every job. A person who may decide but reads no jobs (a policy
admin) reaches a job only while an approval request that names their group waits for their decision —
so they can read what they are asked to decide, and nothing else.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from controlplane.roles import has_role
from routing.decide.policy.document import APPROVAL_GROUPS
from routing.models import ApprovalRequest, Job
from routing.models.approvals import ApprovalStatus
from routing.services.approvals import in_group, may_decide
from web.access import JOB_READERS


def pending_request(job: Job) -> ApprovalRequest | None:
    """The job's pending approval request (at most one), from its prefetched requests."""
    return next((r for r in job.approval_requests.all() if r.status == ApprovalStatus.PENDING), None)


def within_reach(user, job: Job) -> bool:
    if has_role(user, *JOB_READERS):
        return True
    pending = pending_request(job)
    return pending is not None and may_decide(user, job, pending)


def held_within_reach(requests: QuerySet[ApprovalRequest], user) -> QuerySet[ApprovalRequest]:
    """Pending requests narrowed to the person's reach: all of them for a job reader; for anyone else the
    ones they may decide — `may_decide` as a query (a requirement names a group they hold, and they did
    not submit the job), so that a page of the list is a page of the database."""
    if has_role(user, *JOB_READERS):
        return requests
    groups = [group for group in APPROVAL_GROUPS if in_group(user, group)]
    if not groups:
        return requests.none()
    named = Q()
    for group in groups:
        # A request without the requirements list is decided on its summary columns (requirements()).
        named |= Q(requirements__contains=[{"group": group}]) | Q(requirements=[], eligible_group=group)
    return requests.filter(named).exclude(job__submitted_by=user)
