"""The beat sweeper: a crash between commit and publish, or a worker that died holding a lease,
loses nothing — the job is sent again and the claim's fencing keeps it to one result."""

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
    lost_lease = Q(status=JobStatus.RUNNING, lease_expires_at__lt=now) & not_sent_lately
    job_ids = list(Job.objects.filter(stale_dispatch | lost_lease).values_list("pk", flat=True)[:limit])
    for job_id in job_ids:
        # Marked before sending: a sweep that overlaps this one will not send it a third time.
        if Job.objects.filter(pk=job_id).filter(stale_dispatch | lost_lease).update(dispatched_at=now):
            dispatch.send(dispatch.EXECUTE_JOB, str(job_id))
    return len(job_ids)
