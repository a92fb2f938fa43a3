"""Celery tasks: ids in, load, call one service. The job row is the truth; a message is only a nudge."""

from __future__ import annotations

import socket

from celery import shared_task

from routing.webhook_tasks import deliver_webhook  # noqa: F401 (registers the task with the worker)

WORKER_NAME = socket.gethostname()


@shared_task(name="routing.execute_job", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def execute_job(self, job_id: str) -> None:
    from routing.pipeline.execute import job_run
    from routing.pipeline.fencing import lease_remaining_s

    if not job_run(job_id=job_id, worker=f"{WORKER_NAME}:{self.request.id}"):
        # Redelivered while another attempt's lease is live (its worker may have died a moment ago):
        # come back when that lease ends rather than drop the message.
        remaining = lease_remaining_s(job_id)
        if remaining is not None:
            raise self.retry(countdown=remaining + 1)


@shared_task(name="routing.shadow_compare", acks_late=True)
def shadow_compare_task(job_id: str, step_id: int) -> None:
    from routing.pipeline.shadow import shadow_compare

    shadow_compare(job_id=job_id, step_id=step_id)


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


# A full replay spends money, so not acks_late: a message redelivered after a crash must not start it
# again (the claim would refuse it anyway). A run a dead worker left behind shows its silence on its page.
@shared_task(name="routing.replay_history", acks_late=False, soft_time_limit=3600, time_limit=3660)
def replay_history(run_id: int) -> None:
    from routing.evaluation.replay_runs import history_replay_execute

    history_replay_execute(run_id=run_id)
