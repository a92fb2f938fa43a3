"""Celery tasks: ids in, load, call one service. The job row is the truth; a message is only a nudge."""

from __future__ import annotations

import socket

from celery import shared_task

WORKER_NAME = f"{socket.gethostname()}"


@shared_task(name="routing.execute_job", acks_late=True, reject_on_worker_lost=True)
def execute_job(job_id: str) -> None:
    from routing.pipeline.execute import job_run

    job_run(job_id=job_id, worker=WORKER_NAME)


@shared_task(name="routing.sweep_stale_jobs")
def sweep_stale_jobs() -> int:
    from routing.pipeline.sweeper import jobs_redispatch_stale

    return jobs_redispatch_stale()


@shared_task(name="routing.expire_approvals")
def expire_approvals() -> int:
    from routing.services.review import approvals_expire_due

    return approvals_expire_due()


@shared_task(name="routing.demo_trickle")
def demo_trickle() -> None:
    from routing.demo.seed import demo_job_submit

    demo_job_submit()
