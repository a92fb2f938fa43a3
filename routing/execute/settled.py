"""After a job settles (finishes, is held or blocked): tell whoever waits for it, and its webhook.

The OpenAI-compatible endpoint answers synchronously, so it waits for the job's outcome; a Redis list
per job carries the news the moment the outcome commits (BLPOP), instead of polling the row.
"""

from __future__ import annotations

from django.db import transaction

from controlplane.redis_client import get_redis
from routing.execute.webhooks import REVIEW_REQUESTED, webhook_enqueue_on_commit
from routing.models import Job

NOTICE_TTL_S = 300


def _key(job_id: object) -> str:
    return f"arbiter:settled:{job_id}"


def job_settled_on_commit(job: Job, event: str) -> None:
    """Call inside the transaction that settles `job`; its effects happen only if it commits. A hold also
    tells the application's reviewers, where it names an address for them (`review_notify_url`)."""
    webhook_enqueue_on_commit(job, event)
    if event == "job.approval_required":
        webhook_enqueue_on_commit(job, REVIEW_REQUESTED)
    key = _key(job.pk)

    def notify() -> None:
        pipe = get_redis().pipeline()
        pipe.rpush(key, event)
        pipe.expire(key, NOTICE_TTL_S)
        pipe.execute()

    transaction.on_commit(notify, robust=True)


def job_settled_wait(job_id: object, timeout_s: float) -> bool:
    """Block up to `timeout_s` for a settled notice of `job_id`; True when one arrived."""
    return get_redis().blpop([_key(job_id)], timeout=max(timeout_s, 0.01)) is not None
