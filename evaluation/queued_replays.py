"""History replays started from the UI.

`history_replay_request` is the governed act: the run row and its `history_replay.requested` ledger event
in one transaction, the task sent after commit. `history_replay_execute` is the worker's side: claim the
queued row (a conditional UPDATE: a second delivery finds nothing to claim and does nothing, which matters
when a full replay spends money), run `history_run` with a progress callback that writes done/total at
most every PROGRESS_EVERY_S, and link the Evaluation it wrote.

A worker that dies mid-run leaves the row `running`; the row's heartbeat says how long it has been
silent, and the page says so (`is_stale`) instead of showing a bar that never moves.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit import ledger
from audit.ledger import Actor
from evaluation.history_runs import history_cost_cap, history_run
from evaluation.recorded.outcomes import EvaluationError
from routing.execute import dispatch
from routing.models import HistoryReplayMode, HistoryReplayRun, HistoryReplayStatus, PolicyVersion

REPLAY_HISTORY = "routing.replay_history"  # evaluation.tasks.replay_history

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.5
# history_run reports progress about every 1% of the jobs; a full re-execution of slow calls can take a
# while between two reports, so silence counts as stale only well after that.
STALE_AFTER = timedelta(minutes=5)


def history_replay_request(
    *,
    version: PolicyVersion,
    user,
    mode: str = HistoryReplayMode.ROUTING,
    application: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
    cost_cap_usd: Decimal | None = None,
) -> HistoryReplayRun:
    """Queue a replay of past jobs under `version`; EvaluationError when the mode and cost cap disagree."""
    cost_cap_usd = history_cost_cap(mode, cost_cap_usd)
    parameters = {
        "application": application,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "limit": limit,
        "cost_cap_usd": str(cost_cap_usd) if cost_cap_usd is not None else None,
    }
    with transaction.atomic():
        run = HistoryReplayRun.objects.create(
            policy_version=version, requested_by=user, mode=mode, parameters=parameters
        )
        ledger.append(
            "history_replay.requested",
            actor=Actor.user(user.pk),
            subject={"policy_version": version.pk},
            body={"run": run.pk, "mode": mode, **parameters},
        )
        dispatch.send_on_commit(REPLAY_HISTORY, run.pk)
    return run


class _Progress:
    """The `progress(done, total)` callback: writes the counts, at most every PROGRESS_EVERY_S."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S and done < total:
            return
        self.last = now
        HistoryReplayRun.objects.filter(pk=self.run_id, status=HistoryReplayStatus.RUNNING).update(
            done=done, total=total, heartbeat_at=timezone.now()
        )


def _arguments(run: HistoryReplayRun) -> dict[str, Any]:
    parameters = run.parameters
    cap = parameters.get("cost_cap_usd")
    return {
        "application": parameters.get("application"),
        "since": datetime.fromisoformat(parameters["since"]) if parameters.get("since") else None,
        "until": datetime.fromisoformat(parameters["until"]) if parameters.get("until") else None,
        "limit": parameters.get("limit") or 1000,
        "mode": run.mode,
        "cost_cap_usd": Decimal(cap) if cap is not None else None,
    }


def history_replay_execute(*, run_id: int) -> HistoryReplayRun | None:
    """Run a queued replay to its end; None when there is no such queued run (gone, or already taken)."""
    now = timezone.now()
    claimed = HistoryReplayRun.objects.filter(pk=run_id, status=HistoryReplayStatus.QUEUED).update(
        status=HistoryReplayStatus.RUNNING, started_at=now, heartbeat_at=now
    )
    if not claimed:
        return None
    run = HistoryReplayRun.objects.select_related("policy_version").get(pk=run_id)
    try:
        _, evaluation = history_run(version=run.policy_version, progress=_Progress(run_id), **_arguments(run))
    except Exception as error:
        logger.exception("history replay %s failed", run_id)
        # The service's own refusals read as they are; anything else names its kind for whoever debugs it.
        message = str(error) if isinstance(error, EvaluationError) else f"{type(error).__name__}: {error}"
        now = timezone.now()
        HistoryReplayRun.objects.filter(pk=run_id).update(
            status=HistoryReplayStatus.FAILED,
            error=message[:2000],
            finished_at=now,
            heartbeat_at=now,
        )
    else:
        jobs = evaluation.report.get("jobs")
        now = timezone.now()
        HistoryReplayRun.objects.filter(pk=run_id).update(
            status=HistoryReplayStatus.DONE,
            evaluation=evaluation,
            finished_at=now,
            heartbeat_at=now,
            **({"done": jobs, "total": jobs} if isinstance(jobs, int) else {}),
        )
    run.refresh_from_db()
    return run


def is_stale(run: HistoryReplayRun, *, now: datetime | None = None) -> bool:
    """Unfinished, and nothing heard from a worker for STALE_AFTER."""
    return not run.finished and (now or timezone.now()) - run.last_activity > STALE_AFTER
