"""Beat tasks of the ledger; each calls one service. All are idempotent (acks_late is safe)."""

from __future__ import annotations

from celery import shared_task

from audit import checkpoints, payloads, sealer


@shared_task(name="audit.seal_ledger")
def seal_ledger() -> int:
    # The backstop behind sealing-after-commit: bounds seal lag by the beat interval.
    return sealer.seal_pending(wait=True)


@shared_task(name="audit.write_checkpoint")
def write_checkpoint() -> int | None:
    checkpoint = checkpoints.checkpoint_write()
    return checkpoint.seq if checkpoint else None


@shared_task(name="audit.expire_payloads")
def expire_payloads() -> int:
    return payloads.expire()
