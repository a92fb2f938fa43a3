"""Celery tasks of the runtime: ids in, load, call one service. The job row is the truth; a message is
only a nudge. The runtime sends these by name (routing.execute.dispatch), so nothing imports this module
but Celery's autodiscovery."""

from __future__ import annotations

import socket
from typing import Any

import redis
from celery import Task, shared_task
from celery.signals import celeryd_after_setup
from django.conf import settings
from django.db import InterfaceError, OperationalError

from routing.execute import dispatch
from routing.execute.fencing import lease_remaining_s
from routing.execute.run import job_run
from routing.execute.shadow import shadow_compare
from routing.execute.sweeper import jobs_redispatch_stale
from routing.execute.webhooks import (
    retry_countdown,
    webhook_deliver,
    webhook_outbox_done,
    webhook_outbox_next_attempt,
    webhooks_redispatch_overdue,
)

WORKER_NAME = socket.gethostname()
# A run that ended because the database or Redis went away is sent again after this long, and again while
# the outage lasts: the next delivery takes the job over at once (its earlier run, under the same task id,
# is over) instead of waiting out the lease and the sweeper's round.
OUTAGE_RETRY_S = 1.0
OUTAGES = (OperationalError, InterfaceError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class JobTask(Task):
    """execute_job's class: whatever sends a job again — its own retry, or the worker whose pool process
    died running it (`retry_on_worker_lost`) — sends it on the recovery queue, which workers read first.
    (A requeued message would go behind the whole backlog: kombu's Redis transport pushes a rejected
    message to the far end of the list.)"""

    def signature_from_request(
        self, request: Any = None, args: Any = None, kwargs: Any = None, queue: str | None = None, **options: Any
    ) -> Any:
        return super().signature_from_request(request, args, kwargs, queue=dispatch.recovery_queue(), **options)


@shared_task(
    name=dispatch.EXECUTE_JOB,
    base=JobTask,
    bind=True,
    acks_late=True,
    # The worker sends the job again at once when the pool process running it dies (it is requeued, as
    # before, only if that send fails); the new delivery waits for the dead attempt's lease below.
    retry_on_worker_lost=True,
    default_retry_delay=0,
    reject_on_worker_lost=True,
    max_retries=None,
)
def execute_job(self, job_id: str) -> None:
    # A job held under this very task id was claimed by an earlier delivery of this message, which is
    # over: Celery sends a task again only once its run ended (its pool process died, or it asked to be
    # retried, which it does only without a claim). Its lease need not be waited out.
    try:
        ran = job_run(job_id=job_id, worker=f"{WORKER_NAME}:{self.request.id}", ended_run=self.request.id)
    except OUTAGES as outage:
        raise self.retry(countdown=OUTAGE_RETRY_S, exc=outage) from outage
    if not ran:
        # Redelivered while another attempt's lease is live (its worker may have died a moment ago):
        # come back when that lease ends rather than drop the message.
        remaining = lease_remaining_s(job_id)
        if remaining is not None:
            raise self.retry(countdown=remaining + 1)


@celeryd_after_setup.connect
def consume_recovery_queue_first(sender: str, instance: Any, **kwargs: Any) -> None:
    """A worker started without --queues reads the recovery queue before the default one. (One started
    with --queues reads what it names: name the recovery queue first, as controlplane.celery.worker_argv.)"""
    queues = instance.app.amqp.queues
    names = list(queues.consume_from)
    recovery = dispatch.recovery_queue()
    if instance.app.conf.task_default_queue in names and recovery not in names:
        queues.select([recovery, *names])


@shared_task(name=dispatch.SHADOW_COMPARE, acks_late=True)
def shadow_compare_task(job_id: str, step_id: int) -> None:
    shadow_compare(job_id=job_id, step_id=step_id)


@shared_task(name=dispatch.DELIVER_WEBHOOK, bind=True, acks_late=True, max_retries=None)
def deliver_webhook(self, job_id: str, event: str) -> bool:
    """One delivery attempt through routing.execute.webhooks, retried with backoff."""
    outcome = webhook_deliver(job_id=job_id, event=event)
    if outcome.retry and outcome.attempt < settings.ARBITER_WEBHOOK_MAX_ATTEMPTS:
        countdown = retry_countdown(outcome.attempt)
        webhook_outbox_next_attempt(job_id=job_id, event=event, countdown_s=countdown)
        raise self.retry(countdown=countdown)
    webhook_outbox_done(job_id=job_id, event=event)
    return outcome.delivered


@shared_task(name="routing.sweep_stale_jobs")
def sweep_stale_jobs() -> int:
    return jobs_redispatch_stale() + webhooks_redispatch_overdue()


@shared_task(name="routing.demo_trickle")
def demo_trickle() -> None:
    from routing.demo.seed import demo_job_submit  # the demo's seed pulls in services a worker rarely needs

    demo_job_submit()
