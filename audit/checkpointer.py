"""Signing the chain head every few seconds (ARBITER_CHECKPOINT_EVERY_S), from the beat process.

Events sealed after the newest checkpoint could be deleted by someone with the database's superuser
rights without `ledger_verify` noticing; how often checkpoints are written is that window. So it is
a few seconds, and the loop runs on a thread of `celery beat` (started by its `beat_init` signal)
rather than as a beat task: a task would wait in the job queue behind every job ahead of it, and under
a backlog the window would be the backlog's length. Beat is one process per deployment (the README's
production notes), so there is one checkpointer.

A checkpoint is written only when the head has moved, so an idle ledger adds nothing. Each one goes to
the database, then to the file outside it (fsync'd), then to the witness if one is configured
(audit.witness, its own thread). The appending path is untouched: the loop seals with `wait=False`
(it never waits for a sealer at work, which will have sealed by the next tick) and signs what is sealed.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from audit import checkpoints
from audit.witness import Witness

logger = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, *, every: float, witness: Witness | None = None) -> None:
        self.every, self.witness = every, witness
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-checkpointer", daemon=True)
        self.written = 0

    def start(self) -> Checkpointer:
        if self.witness is not None:
            self.witness.start()
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self.witness is not None:
            self.witness.stop()

    def tick(self) -> checkpoints.Checkpoint | None:
        """One checkpoint of the head, if it moved; handed to the witness."""
        checkpoint = checkpoints.checkpoint_write(wait=False)
        if checkpoint is not None:
            self.written += 1
            if self.witness is not None:
                self.witness.offer(checkpoint.line())
        return checkpoint

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.every):
            try:
                close_old_connections()
                self.tick()
            except Exception:  # the database may be away; the next tick tries again
                if not failing:
                    logger.error("ledger checkpointer: checkpoint failed, retrying", exc_info=True)
                failing = True
                connection.close()
                continue
            if failing:
                logger.warning("ledger checkpointer: checkpoints are written again")
            failing = False
        connection.close()


def from_settings() -> Checkpointer:
    target = settings.ARBITER_CHECKPOINT_WITNESS
    witness = Witness(target, timeout=settings.ARBITER_CHECKPOINT_WITNESS_TIMEOUT_S) if target else None
    return Checkpointer(every=settings.ARBITER_CHECKPOINT_EVERY_S, witness=witness)


_running: Checkpointer | None = None


def start_in_beat(**_: Any) -> None:
    """The `beat_init` receiver: start the checkpointer in the beat process."""
    global _running
    if _running is None:
        _running = from_settings().start()
        logger.info(
            "ledger checkpointer: signing the chain head every %g s%s",
            _running.every,
            " and handing each checkpoint to the witness" if _running.witness else "",
        )
