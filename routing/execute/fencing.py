"""Claiming a job and fencing its writes by attempt number.

A worker claims a job with one conditional UPDATE (zero rows: someone else has it). Every later write
of that attempt starts with a conditional UPDATE of the job row *with the attempt it claimed*; when a
newer attempt exists (the old worker was presumed dead and the job re-claimed), the stale worker's
UPDATE matches nothing, its transaction is rolled back and it stops. The UPDATE also takes the row
lock, so two attempts never write at once.

While an attempt runs, a heartbeat thread renews its lease (`lease_kept`): a live call of any length keeps
the job, and a dead worker's lease ends within one short lease, when the job is claimed again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, connections, models, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from audit.ledger import Actor
from routing.models import Job, JobStatus

logger = logging.getLogger(__name__)


class StaleAttempt(Exception):
    """This attempt has been superseded (or the job finished/cancelled): write nothing."""


@dataclass(frozen=True)
class Claim:
    job_id: str
    attempt: int
    worker: str

    @property
    def actor(self) -> Actor:
        return Actor.worker(self.worker)


def lease_remaining_s(job_id: str) -> float | None:
    """Seconds left on a running job's lease (a live worker holds it), or None."""
    lease = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).values_list("lease_expires_at", flat=True).first()
    if lease is None:
        return None
    remaining = (lease - timezone.now()).total_seconds()
    return remaining if remaining > 0 else None


def _lease() -> Any:
    return timezone.now() + timedelta(seconds=settings.ARBITER_LEASE_S)


_CLAIM = """
    UPDATE routing_job
       SET status = 'running', attempt = attempt + 1, lease_expires_at = %(lease)s,
           claimed_by = %(worker)s, started_at = COALESCE(started_at, %(now)s),
           route = %(route)s, complexity = %(complexity)s
     WHERE id = %(job_id)s
       AND (status = 'queued'
            OR (status = 'running' AND (lease_expires_at < %(now)s OR claimed_by LIKE %(ended_run)s)))
 RETURNING attempt
"""


def job_claim_update(
    *, job_id: str, worker: str, route: dict[str, Any], complexity: float, ended_run: str | None = None
) -> int | None:
    """The claim itself, recording the route it will follow, inside the caller's transaction: the new
    attempt number, or None when the job is not claimable (finished, or held by a live lease). One
    statement: UPDATE … RETURNING.

    `ended_run` names a run known to be over (a message's earlier delivery, whose pool process died): a
    lease that run holds is taken over at once instead of waited out."""
    parameters = {
        "lease": _lease(),
        "worker": worker,
        "now": timezone.now(),
        "job_id": job_id,
        "route": Jsonb(route),
        "complexity": complexity,
        # A worker is named "host:run"; no run id matches an empty pattern's stand-in.
        "ended_run": f"%:{ended_run}" if ended_run else "",
    }
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM, parameters)
        row = cursor.fetchone()
    return row[0] if row else None


def _fenced_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """What a fenced write sets on the job: `fields`, and a renewed lease (none once it has finished)."""
    return {
        "lease_expires_at": None if fields.get("status") not in (None, JobStatus.RUNNING) else _lease(),
        **fields,
    }


@contextmanager
def fenced(claim: Claim, **fields: Any) -> Iterator[None]:
    """A transaction that first updates the job (`fields`, and a renewed lease) only if `claim` still
    holds it; raises StaleAttempt — and writes nothing — when it does not."""
    with transaction.atomic():
        updated = Job.objects.filter(pk=claim.job_id, attempt=claim.attempt, status=JobStatus.RUNNING).update(
            **_fenced_fields(fields)
        )
        if not updated:
            raise StaleAttempt(f"attempt {claim.attempt} of job {claim.job_id} no longer holds it")
        yield


@contextmanager
def fenced_with_row(claim: Claim, row: models.Model, **fields: Any) -> Iterator[None]:
    """`fenced(claim, **fields)` that also inserts `row` (a model instance, not yet saved; its pk is set)
    in the same statement: the job's conditional UPDATE and the INSERT are one data-modifying CTE, one
    round trip and no ORM query building. When `claim` no longer holds the job, StaleAttempt is raised
    and the transaction rolls back, the row with it: nothing is written, as with `fenced`."""
    job_fields = _fenced_fields(fields)
    meta = Job._meta
    by_name = {field.name: field for field in meta.concrete_fields}
    assignments = ", ".join(f'"{by_name[name].column}" = %s' for name in job_fields)
    row_fields = [field for field in row._meta.concrete_fields if field is not row._meta.auto_field]
    columns = ", ".join(f'"{field.column}"' for field in row_fields)
    # Every name in the statement is a model's table or column (fields named in code, never from a request).
    sql = (
        f"WITH fenced AS (UPDATE {meta.db_table} SET {assignments}"  # noqa: S608
        " WHERE id = %s AND attempt = %s AND status = %s RETURNING 1),"
        f" inserted AS (INSERT INTO {row._meta.db_table} ({columns})"
        f" VALUES ({', '.join(['%s'] * len(row_fields))}) RETURNING {row._meta.pk.column})"
        " SELECT (SELECT * FROM inserted), EXISTS (SELECT FROM fenced)"
    )
    parameters = [by_name[name].get_db_prep_save(value, connection) for name, value in job_fields.items()]
    parameters += [claim.job_id, claim.attempt, JobStatus.RUNNING]
    parameters += [field.get_db_prep_save(field.pre_save(row, True), connection) for field in row_fields]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, parameters)
            row_id, held = cursor.fetchone()
        if not held:
            raise StaleAttempt(f"attempt {claim.attempt} of job {claim.job_id} no longer holds it")
        row.pk = row_id
        row._state.adding = False
        row._state.db = connection.alias
        yield


def lease_renew(claim: Claim) -> bool:
    """Extend the attempt's lease by one lease from now; False when the attempt no longer holds the job."""
    return bool(
        Job.objects.filter(pk=claim.job_id, attempt=claim.attempt, status=JobStatus.RUNNING).update(
            lease_expires_at=_lease()
        )
    )


@dataclass
class Heartbeat:
    """The renewal thread's state. `renew_until` (monotonic seconds) is moved by the runner to the end of
    the current step's time budget: a step stuck past it is no longer renewed and loses its lease."""

    claim: Claim
    renew_until: float = float("inf")
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        interval = max(1.0, settings.ARBITER_LEASE_S / 3)
        try:
            while not self._stop.wait(interval):
                if time.monotonic() > self.renew_until:
                    continue
                try:
                    if not lease_renew(self.claim):
                        self.lost.set()  # superseded or finished: the attempt's next fenced write stops it
                        return
                except DatabaseError:
                    # Postgres away for a moment: the next beat tries again; the lease may lapse meanwhile,
                    # and fencing keeps a re-claim and this attempt from both writing.
                    logger.warning("job %s: lease renewal failed", self.claim.job_id, exc_info=True)
                    connections.close_all()
        finally:
            connections.close_all()  # this thread's own connection


@contextmanager
def lease_kept(claim: Claim) -> Iterator[Heartbeat]:
    """Renew `claim`'s lease every third of a lease while the block runs (provider calls included)."""
    heartbeat = Heartbeat(claim)
    thread = threading.Thread(target=heartbeat.run, name=f"lease-{claim.job_id}", daemon=True)
    thread.start()
    try:
        yield heartbeat
    finally:
        heartbeat.stop()
        thread.join(timeout=10)
