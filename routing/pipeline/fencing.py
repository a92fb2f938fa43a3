"""Claiming a job and fencing its writes by attempt number.

A worker claims a job with one conditional UPDATE (zero rows: someone else has it). Every later write
of that attempt first locks the job row *with the attempt it claimed*; when a newer attempt exists
(the old worker was presumed dead and the job re-claimed), the stale worker finds no row and stops.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from audit.ledger import Actor
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit import ledger
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
    lease = (
        Job.objects.filter(pk=job_id, status=JobStatus.RUNNING)
        .values_list("lease_expires_at", flat=True)
        .first()
    )
    if lease is None:
        return None
    remaining = (lease - timezone.now()).total_seconds()
    return remaining if remaining > 0 else None


def job_claim(*, job_id: str, worker: str) -> Claim | None:
    now = timezone.now()
    claimable = Q(status=JobStatus.QUEUED) | Q(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    with transaction.atomic():
        claimed = Job.objects.filter(claimable, pk=job_id).update(
            status=JobStatus.RUNNING,
            attempt=F("attempt") + 1,
            lease_expires_at=now + timedelta(seconds=settings.ARBITER_LEASE_S),
            claimed_by=worker,
            started_at=Coalesce("started_at", now),
        )
        if not claimed:
            return None
        job = Job.objects.only("attempt", "application_id").get(pk=job_id)
        subject = {"job": job_id, "application": job.application_id}
        if job.attempt > settings.ARBITER_MAX_ATTEMPTS:
            # A poison job: every attempt so far died mid-way. Stop trying and say why.
            cap = settings.ARBITER_MAX_ATTEMPTS
            reason = f"gave up after {job.attempt - 1} attempts (ARBITER_MAX_ATTEMPTS={cap})"
            Job.objects.filter(pk=job_id).update(
                status=JobStatus.FAILED, status_reason=reason, finished_at=now, lease_expires_at=None
            )
            ledger.append("job.failed", actor=Actor.worker(worker), subject=subject, body={"reason": reason})
            return None
        ledger.append(
            "job.claimed", actor=Actor.worker(worker), subject=subject, body={"attempt": job.attempt}
        )
    return Claim(job_id=str(job_id), attempt=job.attempt, worker=worker)


@contextmanager
def fenced(claim: Claim) -> Iterator[Job]:
    """A transaction in which `claim` still holds the job; renews its lease."""
    with transaction.atomic():
        job = (
            Job.objects.select_for_update()
            .filter(pk=claim.job_id, attempt=claim.attempt, status=JobStatus.RUNNING)
            .first()
        )
        if job is None:
            raise StaleAttempt(f"attempt {claim.attempt} of job {claim.job_id} no longer holds it")
        job.lease_expires_at = timezone.now() + timedelta(seconds=settings.ARBITER_LEASE_S)
        yield job
