"""The evaluation task: a history replay started from the UI, run by a worker."""

from __future__ import annotations

from celery import shared_task

from evaluation.queued_replays import REPLAY_HISTORY, history_replay_execute


# A full replay spends money, so not acks_late: a message redelivered after a crash must not start it
# again (the claim would refuse it anyway). A run a dead worker left behind shows its silence on its page.
# Its name predates the evaluation app; it is kept so queued messages still find it.
@shared_task(name=REPLAY_HISTORY, acks_late=False, soft_time_limit=3600, time_limit=3660)
def replay_history(run_id: int) -> None:
    history_replay_execute(run_id=run_id)
