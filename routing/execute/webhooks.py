"""Signed webhooks: the one module that sends HTTP to an application's callback URL.

A callback URL is checked when the job is submitted and again, address by address, at every delivery:
a host name that resolved to a public address at submit time can resolve to 127.0.0.1 or to the cloud
metadata service later (DNS rebinding). The connection then goes to the address that was checked, not
to whatever a second resolution would return. The address rules (shared with model deployments) are in
routing/addresses.py: metadata and link-local always refused; loopback and private ranges only where a
setting allows.

The body is signed with HMAC-SHA256 over `<unix time>.<body>`; the receiver's side is in
routing/api/WEBHOOKS.md. Delivery is at least once: the receiver deduplicates on `Arbiter-Delivery`.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import random
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from routing.execute import dispatch
from routing.execute.addresses import Target as CallbackTarget
from routing.execute.addresses import UnsafeAddress as UnsafeCallbackUrl
from routing.execute.addresses import url_target
from routing.models import Job, WebhookDelivery, WebhookOutbox
from routing.release import is_application_job, released_output, released_status_reason, result_withheld

EVENTS = (
    "job.completed",
    "job.rejected",
    "job.approval_required",
    "job.blocked",
    "job.failed",
    "job.expired",
    "job.cancelled",
)
# Not the application's: its reviewers', sent to the application's `review_notify_url` when a job is held.
REVIEW_REQUESTED = "review.requested"
SIGNATURE_HEADER = "Arbiter-Signature"
USER_AGENT = "Arbiter-Webhooks/1"


def callback_target(url: str) -> CallbackTarget:
    """Parse, resolve and check a callback URL; raises UnsafeCallbackUrl."""
    allow_private = settings.ARBITER_WEBHOOK_ALLOW_PRIVATE
    return url_target(
        url,
        what="callback URL",
        allow_loopback=settings.ARBITER_WEBHOOK_ALLOW_LOOPBACK or allow_private,
        allow_private=allow_private,
        loopback_setting="ARBITER_WEBHOOK_ALLOW_LOOPBACK",
        private_setting="ARBITER_WEBHOOK_ALLOW_PRIVATE",
    )


def callback_url_check(url: str) -> None:
    callback_target(url)


def signature_header(body: bytes, *, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def webhook_secret_for(job: Job) -> str | None:
    # One secret for now (ARBITER_WEBHOOK_SECRET); per application once Application has a secret field.
    return settings.ARBITER_WEBHOOK_SECRET


def webhook_url(job: Job, event: str) -> str:
    """Where `event` of `job` goes: its reviewers' address for a review request, else the job's callback."""
    return job.application.review_notify_url if event == REVIEW_REQUESTED else job.callback_url


def review_request_payload(job: Job) -> dict[str, Any]:
    """What reviewers' chat tool shows: which rules hold which job, who may decide, by when, and the link.
    Never the held answer, nor a reason written from it: a channel is wider than the reviewers who act."""
    request = job.approval_requests.filter(status="pending").order_by("-created_at").first()
    page = f"{settings.ARBITER_PUBLIC_URL}/jobs/{job.pk}/"
    rules = ", ".join(request.rule_ids) if request else "a policy rule"
    who = f"{request.required_approvers} of group {request.eligible_group}" if request else "a reviewer"
    return {
        "id": f"{job.pk}:{REVIEW_REQUESTED}",
        "type": REVIEW_REQUESTED,
        "created_at": int(time.time()),
        "text": f"Held for review: a {job.task_type} job of {job.application.name} ({rules}); needs {who}. {page}",
        "data": {
            "job": {
                "id": str(job.pk),
                "application": job.application.slug,
                "task_type": job.task_type,
                "final_tier": job.final_tier or None,
                "page": page,
                "review_api": f"/api/v1/review/jobs/{job.pk}",
            },
            "approval": {
                "rule_ids": request.rule_ids if request else [],
                "required_approvers": request.required_approvers if request else None,
                "eligible_group": request.eligible_group if request else None,
                "expires_at": request.expires_at.isoformat() if request else None,
            },
        },
    }


def webhook_payload(job: Job, event: str) -> dict[str, Any]:
    if event == REVIEW_REQUESTED:
        return review_request_payload(job)
    # Through the release gate: a held or blocked job's webhook says what happened, never what the
    # model answered (`output` is null until the job is completed).
    return {
        "id": f"{job.pk}:{event}",
        "type": event,
        "created_at": int(time.time()),
        "data": {
            "job": {
                "id": str(job.pk),
                "status": job.status,
                "status_reason": released_status_reason(job),
                "task_type": job.task_type,
                "final_tier": job.final_tier or None,
                "final_confidence": job.final_confidence,
                "escalations": job.escalations,
                "total_cost_usd": str(job.total_cost_usd),
                "output": released_output(job),
                "result_withheld": result_withheld(job),
                "metadata": job.metadata,
                "url": f"/api/v1/jobs/{job.pk}",
            }
        },
    }


def webhook_enqueue_on_commit(job: Job, event: str) -> None:
    """The hook point for the pipeline and review services: call it inside the transaction that moves
    the job to `event`. Its outbox row commits with that transaction, and the delivery is queued once it
    has; if the broker cannot take it then, the sweeper sends it (webhooks_redispatch_overdue)."""
    if not webhook_url(job, event) or not is_application_job(job):
        return  # a replay is an evaluation: neither the application nor its reviewers are told about it
    WebhookOutbox.objects.bulk_create(
        [WebhookOutbox(job=job, event=event, due_at=timezone.now())], ignore_conflicts=True
    )
    dispatch.send_on_commit(dispatch.DELIVER_WEBHOOK, str(job.pk), event)


def webhook_outbox_next_attempt(*, job_id: str, event: str, countdown_s: float) -> None:
    """A retry is scheduled `countdown_s` from now: the sweeper leaves the event alone until then."""
    due = timezone.now() + timedelta(seconds=countdown_s)
    WebhookOutbox.objects.filter(job_id=job_id, event=event, done_at=None).update(due_at=due)


def webhook_outbox_done(*, job_id: str, event: str) -> None:
    """The event's delivery has ended (delivered, refused, out of attempts, or nothing to send)."""
    WebhookOutbox.objects.filter(job_id=job_id, event=event, done_at=None).update(done_at=timezone.now())


def webhooks_redispatch_overdue(*, limit: int = 500) -> int:
    """Send again every event whose delivery should have started more than ARBITER_DISPATCH_STALE_S
    ago and has not ended: its publish failed (the broker was down at commit), or the worker holding it
    died. Marked before sending, so overlapping sweeps send it once."""
    now = timezone.now()
    overdue = Q(done_at=None, due_at__lt=now - timedelta(seconds=settings.ARBITER_DISPATCH_STALE_S))
    found = list(WebhookOutbox.objects.filter(overdue).values_list("pk", "job_id", "event")[:limit])
    for pk, job_id, event in found:
        if WebhookOutbox.objects.filter(overdue, pk=pk).update(due_at=now):
            dispatch.send(dispatch.DELIVER_WEBHOOK, str(job_id), event)
    return len(found)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked; Host stays the URL's host."""

    def __init__(self, address: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, address: str, *args: Any, **kwargs: Any) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(*args, context=self._tls, **kwargs)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)  # certificate checked for host


def _post(target: CallbackTarget, body: bytes, headers: dict[str, str], timeout: float) -> int:
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    for index, address in enumerate(target.addresses):
        connection = cls(address, target.host, target.port, timeout=timeout)
        try:
            try:
                connection.connect()
            except OSError:
                if index == len(target.addresses) - 1:
                    raise
                continue  # the next checked address of the same host
            connection.request("POST", target.path, body=body, headers=headers)
            response = connection.getresponse()
            response.read(64 * 1024)
            return response.status
        finally:
            connection.close()
    raise OSError("no address to connect to")


class DeliveryGivenUp(Exception):
    """The event's deliveries keep dying before they record an attempt: it is not sent again."""


def _deliveries_crashed(*, job_id: str, event: str, recorded: int) -> int:
    """Count this delivery as begun; return how many begun before it recorded no attempt (they died)."""
    outbox = WebhookOutbox.objects.filter(job_id=job_id, event=event, done_at=None)
    if not outbox.update(started=F("started") + 1):
        return 0  # no pending row: delivered, given up, or an event from before the outbox
    begun = outbox.values_list("started", flat=True).first() or 0
    return max(begun - 1 - recorded, 0)


@dataclass(frozen=True)
class DeliveryOutcome:
    delivered: bool
    attempt: int
    retry: bool  # worth trying again later


def webhook_deliver(*, job_id: str, event: str) -> DeliveryOutcome:
    """One delivery attempt, recorded in WebhookDelivery whatever happens. Never sent twice once delivered."""
    job = Job.objects.select_related("application").filter(pk=job_id).first()
    url = webhook_url(job, event) if job else ""
    if job is None or not url or not is_application_job(job):
        return DeliveryOutcome(delivered=False, attempt=0, retry=False)
    previous = WebhookDelivery.objects.filter(job=job, event=event)
    if previous.filter(delivered=True).exists():
        return DeliveryOutcome(delivered=True, attempt=previous.count(), retry=False)
    attempt = previous.count() + 1
    started = time.monotonic()
    status_code, error, retry = None, "", True
    secret = webhook_secret_for(job)
    crashed = _deliveries_crashed(job_id=job_id, event=event, recorded=attempt - 1)
    try:
        if crashed >= settings.ARBITER_WEBHOOK_MAX_ATTEMPTS:
            raise DeliveryGivenUp(f"{crashed} deliveries ended before recording an attempt (a crash each time)")
        if not secret:
            raise UnsafeCallbackUrl("ARBITER_WEBHOOK_SECRET is not configured; nothing is sent unsigned")
        target = callback_target(url)  # re-checked now: DNS may have changed since submit
        body = json.dumps(webhook_payload(job, event), separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature_header(body, secret=secret),
            "Arbiter-Event": event,
            "Arbiter-Delivery": f"{job.pk}:{event}",
            "Arbiter-Attempt": str(attempt),
        }
        status_code = _post(target, body, headers, settings.ARBITER_WEBHOOK_TIMEOUT_S)
        if not 200 <= status_code < 300:
            error = f"the receiver answered {status_code}"
    except UnsafeCallbackUrl as refused:
        error, retry = f"refused: {refused}", False
    except DeliveryGivenUp as given_up:
        error, retry = f"given up: {given_up}", False
    except (OSError, http.client.HTTPException) as failure:
        error = f"{type(failure).__name__}: {failure}"
    delivered = status_code is not None and 200 <= status_code < 300
    WebhookDelivery.objects.create(
        job=job,
        event=event,
        url=url[:2000],
        attempt=attempt,
        status_code=status_code,
        error=error[:2000],
        delivered=delivered,
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    return DeliveryOutcome(delivered=delivered, attempt=attempt, retry=retry and not delivered)


def retry_countdown(attempt: int) -> float:
    """Exponential backoff with jitter: about 5 s, 10 s, 20 s, 40 s, 80 s … capped at 15 minutes."""
    base = min(5 * 2 ** (attempt - 1), 900)
    return base * random.uniform(0.8, 1.2)
