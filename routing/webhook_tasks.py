"""The webhook delivery task: ids in, one attempt through routing.webhooks, retried with backoff.

Registered by importing this module from routing.tasks (Celery's autodiscovery loads `<app>.tasks`).
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings


@shared_task(name="routing.deliver_webhook", bind=True, acks_late=True, max_retries=None)
def deliver_webhook(self, job_id: str, event: str) -> bool:
    from routing.webhooks import retry_countdown, webhook_deliver

    outcome = webhook_deliver(job_id=job_id, event=event)
    if outcome.retry and outcome.attempt < settings.ARBITER_WEBHOOK_MAX_ATTEMPTS:
        raise self.retry(countdown=retry_countdown(outcome.attempt))
    return outcome.delivered
