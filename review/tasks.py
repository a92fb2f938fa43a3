"""Beat task of review: approvals whose time ran out are decided by the policy's expiry rule."""

from __future__ import annotations

from celery import shared_task

from review.services import approvals_expire_due


@shared_task(name="routing.expire_approvals")  # the name predates the review app; beat schedules keep it
def expire_approvals() -> int:
    return approvals_expire_due()
