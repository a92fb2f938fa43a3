"""Sending work to the workers by task name.

The runtime enqueues here without importing `routing.tasks`, whose tasks call into the runtime: the arrow
runs one way, tasks → runtime. Messages carry ids only; the row in Postgres is the truth.
"""

from __future__ import annotations

from celery import current_app
from django.db import transaction

from controlplane import celery

EXECUTE_JOB = "routing.execute_job"
SHADOW_COMPARE = "routing.shadow_compare"
DELIVER_WEBHOOK = "routing.deliver_webhook"


def send(task: str, *args: object) -> None:
    """Queue `task` now (on the default queue, through the configured routes)."""
    current_app.send_task(task, args=args)


def recovery_queue() -> str:
    """The queue workers read first, for jobs whose worker died (the default queue's name + .recovery)."""
    return celery.recovery_queue(current_app.conf.task_default_queue)


def send_recovery(task: str, *args: object, countdown: float | None = None, task_id: str | None = None) -> None:
    """Queue `task` on the recovery queue: ahead of the backlog, since its job already waited once. `task_id`:
    the id of the run that ended (the worker then takes its job over without waiting out that run's lease)."""
    current_app.send_task(task, args=args, queue=recovery_queue(), countdown=countdown, task_id=task_id)


def send_on_commit(task: str, *args: object) -> None:
    """Queue `task` once the current transaction commits, and never if it rolls back.

    The commit is what counts: when the broker cannot take the message the failure is logged and the
    caller goes on as if it had been sent, since what was committed must not be answered as an error.
    A job left undispatched is sent again by the sweeper (`routing.execute.sweeper`: its dispatch goes
    stale), and so is a webhook (its outbox row in `routing.execute.webhooks` goes overdue)."""
    transaction.on_commit(lambda: send(task, *args), robust=True)
