"""The beat sweeper: a crash between commit and publish, or a worker that died holding a lease,
loses nothing — the job is sent again and the claim's fencing keeps it to one result. A lost lease is
sent on the recovery queue, which workers read before the backlog."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from routing.execute import dispatch
from routing.models import Job, JobStatus


def jobs_redispatch_stale(*, limit: int = 500) -> int:
    now = timezone.now()
    not_sent_lately = Q(dispatched_at__lt=now - timedelta(seconds=settings.ARBITER_DISPATCH_STALE_S))
    stale_dispatch = Q(status=JobStatus.QUEUED) & not_sent_lately
    # A lost lease is proof enough that the job needs sending, unless it was sent within the last lease.
    recently = min(settings.ARBITER_DISPATCH_STALE_S, settings.ARBITER_LEASE_S)
    not_sent_this_lease = Q(dispatched_at__lt=now - timedelta(seconds=recently))
    lost_lease = Q(status=JobStatus.RUNNING, lease_expires_at__lt=now) & not_sent_this_lease
    found = list(Job.objects.filter(stale_dispatch | lost_lease).values_list("pk", "status")[:limit])
    for job_id, status in found:
        # Marked before sending: a sweep that overlaps this one will not send it a third time.
        if Job.objects.filter(pk=job_id).filter(stale_dispatch | lost_lease).update(dispatched_at=now):
            # A lost lease is a recovery: it goes ahead of the backlog. A dispatch that went missing is not.
            if status == JobStatus.RUNNING:
                dispatch.send_recovery(dispatch.EXECUTE_JOB, str(job_id))
            else:
                dispatch.send(dispatch.EXECUTE_JOB, str(job_id))
    return len(found)
