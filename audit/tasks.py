"""Beat tasks of the ledger; each calls one service. All are idempotent (acks_late is safe).

Checkpoints are not a task: they are written every few seconds by a thread of the beat process
(audit.checkpointer), which a backlog in the job queue cannot delay."""

from __future__ import annotations

from celery import shared_task

from audit import payloads, sealer


@shared_task(name="audit.seal_ledger")
def seal_ledger() -> int:
    # The backstop behind sealing-after-commit: bounds seal lag by the beat interval.
    return sealer.seal_pending(wait=True)


@shared_task(name="audit.expire_payloads")
def expire_payloads() -> int:
    return payloads.expire()
