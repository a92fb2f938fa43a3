"""Claiming a job and fencing its writes by attempt number.

A worker claims a job with one conditional UPDATE (zero rows: someone else has it). Every later write
of that attempt starts with a conditional UPDATE of the job row *with the attempt it claimed*; when a
newer attempt exists (the old worker was presumed dead and the job re-claimed), the stale worker's
UPDATE matches nothing, its transaction is rolled back and it stops. The UPDATE also takes the row
lock, so two attempts never write at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from audit.ledger import Actor
from routing.models import Job, JobStatus


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
       AND (status = 'queued' OR (status = 'running' AND lease_expires_at < %(now)s))
 RETURNING attempt
"""


def job_claim_update(*, job_id: str, worker: str, route: dict[str, Any], complexity: float) -> int | None:
    """The claim itself, recording the route it will follow, inside the caller's transaction: the new
    attempt number, or None when the job is not claimable (finished, or held by a live lease). One
    statement: UPDATE … RETURNING."""
    parameters = {
        "lease": _lease(),
        "worker": worker,
        "now": timezone.now(),
        "job_id": job_id,
        "route": Jsonb(route),
        "complexity": complexity,
    }
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM, parameters)
        row = cursor.fetchone()
    return row[0] if row else None


@contextmanager
def fenced(claim: Claim, **fields: Any) -> Iterator[None]:
    """A transaction that first updates the job (`fields`, and a renewed lease) only if `claim` still
    holds it; raises StaleAttempt — and writes nothing — when it does not."""
    with transaction.atomic():
        updated = Job.objects.filter(pk=claim.job_id, attempt=claim.attempt, status=JobStatus.RUNNING).update(
            lease_expires_at=None if fields.get("status") not in (None, JobStatus.RUNNING) else _lease(),
            **fields,
        )
        if not updated:
            raise StaleAttempt(f"attempt {claim.attempt} of job {claim.job_id} no longer holds it")
        yield
