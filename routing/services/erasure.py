"""Erasure of personal data: by job, by application, or by a search for a data subject's identifier.

What is kept where (issue 12, item 9): the ledger holds digests and redacted free text only, and the
payload store holds redacted content; both stay. The raw copies the product needs to work — the request
the model is sent (`Job.request`), the answer the application reads (`Job.result`, `Step.output`, a
reviewer's edit in `ApprovalDecision.override`) — are job-scoped columns, and erasure blanks them, with
the job's labels, metadata, callback URL and idempotency key (webhook deliveries keep only the URL's
origin), and redacts the free text beside them (reasons, errors). Digests, tokens,
tiers, costs and statuses stay: they are the record, not the person.

Each job is erased in its own transaction, with its `job.erased` event (the reason's code, digests; never
content or free text: the reference an operator gives is kept, redacted and erasable, in the payload store),
so a large erasure that stops half-way leaves every erased job consistent and can simply be run again.
A replay copies its original's request, and a response continued with `previous_response_id` copies
the conversation it continues: erasing a job erases its replays and continuations too. An unfinished job is
cancelled first, so that no worker writes an answer into it afterwards (writes are fenced by status).

`erasure_select` is the preview (what would be erased); `erasure_apply` does it. The command, the admin
API and the page all call these two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit
from uuid import UUID

from django.db import models, transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from audit import ledger, payloads
from audit.ledger import Actor
from audit.models import PayloadReference
from audit.redaction import redact
from routing.models import Application, ApprovalDecision, ApprovalRequest, Job, Step
from routing.models.webhooks import WebhookDelivery
from routing.services.jobs import job_cancel

MIN_IDENTIFIER_LENGTH = 5
MAX_REFERENCE_LENGTH = 500
PREVIEW_LIMIT = 200
ERASED_TEXT = "[ERASED]"


class ErasureReason(models.TextChoices):
    DATA_SUBJECT_REQUEST = "data_subject_request", "a data subject's request (GDPR art. 17)"
    RETENTION = "retention", "the retention period has passed"
    LEGAL_OBLIGATION = "legal_obligation", "a legal obligation to erase"
    SUBMITTED_IN_ERROR = "submitted_in_error", "submitted in error"


class ErasureError(Exception):
    """The erasure cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class ErasureSelection:
    """What an erasure would touch. `identifier` is kept only in memory, to blank it in free text."""

    scope: str  # "job", "application" or "subject": said in the ledger, never the identifier itself
    job_ids: tuple[str, ...]
    payload_digests: tuple[str, ...] = ()  # content found by the search that no selected job stored
    application: Application | None = None
    identifier: str = field(default="", repr=False)

    def preview(self, limit: int = PREVIEW_LIMIT) -> list[Job]:
        return list(
            Job.objects.filter(pk__in=self.job_ids[:limit]).select_related("application").order_by("-created_at")
        )


@dataclass(frozen=True)
class ErasureOutcome:
    jobs: int
    payloads: int
    erased_at: datetime


def erasure_select(
    *, job: Job | None = None, application: Application | None = None, identifier: str | None = None
) -> ErasureSelection:
    """The jobs (replays included) and stored contents an erasure would blank.

    One of `job`, `application` or `identifier`; an identifier may be narrowed to one application. The
    identifier is searched, case-insensitively, in every raw copy: request, result, labels, metadata,
    status reason, callback URL, idempotency key, step outputs and errors, reviewers' edits and reasons,
    webhook deliveries' URLs and errors, and the payload store."""
    if identifier is not None:
        identifier = identifier.strip()
        if len(identifier) < MIN_IDENTIFIER_LENGTH:
            raise ErasureError(
                f"the identifier must be at least {MIN_IDENTIFIER_LENGTH} characters (an e-mail address, a "
                "phone number, an IBAN...): a shorter one would match unrelated people's data"
            )
        if job is not None:
            raise ErasureError("search by identifier, or name a job, not both")
        found, digests = _mentioning(identifier, application)
        return ErasureSelection("subject", _with_replays(found), digests, application, identifier)
    if (job is None) == (application is None):
        raise ErasureError("name exactly one job, one application, or a data subject's identifier")
    if job is not None:
        if job.erased_at is not None:
            raise ErasureError(f"job {job.pk} was already erased on {job.erased_at:%Y-%m-%d %H:%M} UTC")
        return ErasureSelection("job", _with_replays({str(job.pk)}))
    ids = {
        str(pk)
        for pk in Job.objects.filter(application=application, erased_at__isnull=True).values_list("pk", flat=True)
    }
    return ErasureSelection("application", _with_replays(ids), application=application)


def erasure_apply(*, selection: ErasureSelection, actor: Actor, reason: str, reference: str = "") -> ErasureOutcome:
    """Erase what `selection` names; one transaction and one `job.erased` event per job."""
    if reason not in ErasureReason.values:
        raise ErasureError(f"unknown erasure reason {reason!r}; allowed: {', '.join(ErasureReason.values)}")
    if len(reference) > MAX_REFERENCE_LENGTH:
        raise ErasureError(f"the reference is longer than {MAX_REFERENCE_LENGTH} characters")
    reference = _scrub(reference.strip(), selection.identifier)
    # The ledger is kept for ever and cannot be erased, so it gets the reason's code only. The free-text
    # reference (a ticket number, or whatever an operator typed) goes to the payload store, redacted, where
    # a later erasure's search or a retention period (kind "erasure_reference") can reach it; events
    # name it by digest. It has no subject, so erasing an application's content now does not erase it.
    note = None
    if reference:
        with transaction.atomic():
            note = payloads.store(reference, kind="erasure_reference")
    now = timezone.now()
    erased_jobs = erased_payloads = 0
    for job_id in selection.job_ids:
        erased = _job_erase(job_id, selection, actor, reason, note, now)
        if erased is not None:
            erased_jobs += 1
            erased_payloads += erased
    if selection.payload_digests:
        erased_payloads += payloads.erase_digests(list(selection.payload_digests), actor=actor, reason=reason)
    if selection.application is not None and selection.scope == "application":
        # Content the application stored outside any job (none today; any future kind is covered).
        erased_payloads += payloads.erase(
            subject={"application": selection.application.pk}, actor=actor, reason=reason
        )
    return ErasureOutcome(jobs=erased_jobs, payloads=erased_payloads, erased_at=now)


def _job_erase(
    job_id: str, selection: ErasureSelection, actor: Actor, reason: str, note: str | None, now: datetime
) -> int | None:
    """Erase one job; how many of its payloads were erased, or None when it was gone or already erased
    (by a concurrent erasure since the selection was made)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.erased_at is not None:
            return None
        if not job.is_terminal:
            job_cancel(job=job, actor=actor, reason=f"erased ({reason})")
            job.refresh_from_db()
        tombstone = {"erased": True, "erased_at": now.isoformat()}
        _blank_job(job, tombstone, selection.identifier, now)
        steps, decisions = _blank_around(job, tombstone, selection.identifier)
        digests = sorted(
            set(PayloadReference.objects.filter(subject_job=str(job.pk)).values_list("payload_id", flat=True))
        )
        count = payloads.erase(subject={"job": job.pk}, actor=actor, reason=reason) if digests else 0
        ledger.append(
            "job.erased",
            actor=actor,
            subject={"job": job.pk, "application": job.application_id},
            body={
                "reason": reason,
                "reference_sha256": note,
                "scope": selection.scope,
                "request_sha256": job.request_sha256,
                "payloads": digests,
                "steps": steps,
                "decisions": decisions,
                "replay_of": str(job.replay_of_id) if job.replay_of_id else None,
            },
        )
    return count


def _blank_job(job: Job, tombstone: dict, identifier: str, now: datetime) -> None:
    # `messages: []` keeps the request's shape for code that reads it (a replay of history reports an
    # erased input as unknown, never guesses); the result keeps its non-personal facts.
    kept = {key: job.result.get(key) for key in ("step_index", "tier", "overridden")} if job.result else {}
    job.request = {**tombstone, "messages": []}
    job.result = {**tombstone, **kept} if job.result is not None else None
    job.labels = {}
    job.metadata = {}
    job.status_reason = _scrub(job.status_reason, identifier)
    # A callback URL and an idempotency key are the application's strings and may name the customer
    # (`?customer=<e-mail>`, `refund-<e-mail>`). The URL is dropped rather than cut to its origin: a
    # webhook still due would otherwise be posted to the host's root. The deliveries keep the origin.
    # The key is dropped rather than hashed: a hash of an e-mail address is found again by guessing.
    job.callback_url = ""
    job.idempotency_key = None
    job.erased_at = now
    job.version += 1
    job.save(
        update_fields=[
            "request",
            "result",
            "labels",
            "metadata",
            "status_reason",
            "callback_url",
            "idempotency_key",
            "erased_at",
            "version",
        ]
    )


def _blank_around(job: Job, tombstone: dict, identifier: str) -> tuple[int, int]:
    """The job's steps, reviewers' decisions, approval requests and webhook deliveries; returns how many
    steps and decisions there were."""
    steps = list(Step.objects.filter(job=job))
    for step in steps:
        step.output = tombstone if step.output is not None else None
        step.error = _scrub(step.error, identifier)
    Step.objects.bulk_update(steps, ["output", "error"])
    decisions = list(ApprovalDecision.objects.filter(request__job=job))
    for decision in decisions:
        if decision.override is not None:
            decision.override = {**tombstone, "step": decision.override.get("step")}
        decision.reason = _scrub(decision.reason, identifier)
    ApprovalDecision.objects.bulk_update(decisions, ["override", "reason"])
    requests = list(ApprovalRequest.objects.filter(job=job))
    for request in requests:
        request.reasons = [_scrub(text, identifier) for text in request.reasons]
    ApprovalRequest.objects.bulk_update(requests, ["reasons"])
    deliveries = list(WebhookDelivery.objects.filter(job=job))
    for delivery in deliveries:
        delivery.error = _scrub(delivery.error, identifier)
        origin = url_origin(delivery.url)
        delivery.url = "" if identifier and identifier.casefold() in origin.casefold() else origin
    WebhookDelivery.objects.bulk_update(deliveries, ["error", "url"])
    return len(steps), len(decisions)


def _with_replays(job_ids: set[str]) -> tuple[str, ...]:
    """The jobs and, transitively, their replays (each holds a copy of its original's request) and the
    responses that continued them (`previous_response_id`: each holds its conversation and answer)."""
    selected = {UUID(job_id) for job_id in job_ids}
    frontier = set(selected)
    while frontier:
        copies = Job.objects.filter(Q(replay_of_id__in=frontier) | Q(stored_response__previous_id__in=frontier))
        frontier = set(copies.values_list("pk", flat=True)) - selected
        selected |= frontier
    return tuple(sorted(str(pk) for pk in selected))


def _mentioning(identifier: str, application: Application | None) -> tuple[set[str], tuple[str, ...]]:
    """Ids of the unerased jobs whose raw content mentions `identifier`, and the digests of stored
    contents that mention it but belong to no such job."""
    jobs = Job.objects.filter(erased_at__isnull=True)
    if application is not None:
        jobs = jobs.filter(application=application)
    columns = ("request", "result", "labels", "metadata")
    direct = jobs.annotate(**{f"{name}_text": Cast(name, TextField()) for name in columns}).filter(
        _any_contains(
            [f"{name}_text" for name in columns] + ["status_reason", "callback_url", "idempotency_key"], identifier
        )
    )
    steps = (
        Step.objects.filter(job__in=jobs)
        .annotate(output_text=Cast("output", TextField()))
        .filter(_any_contains(["output_text", "error"], identifier))
    )
    decisions = (
        ApprovalDecision.objects.filter(request__job__in=jobs)
        .annotate(override_text=Cast("override", TextField()))
        .filter(_any_contains(["override_text", "reason"], identifier))
    )
    found = {str(pk) for pk in direct.values_list("pk", flat=True)}
    found |= {str(pk) for pk in steps.values_list("job_id", flat=True)}
    found |= {str(pk) for pk in decisions.values_list("request__job_id", flat=True)}
    deliveries = WebhookDelivery.objects.filter(job__in=jobs).filter(_any_contains(["url", "error"], identifier))
    found |= {str(pk) for pk in deliveries.values_list("job_id", flat=True)}
    references = PayloadReference.objects.filter(
        payload__content__icontains=identifier, payload__erased_at__isnull=True
    )
    if application is not None:
        references = references.filter(subject_application=str(application.pk))
    stored = list(references.values_list("payload_id", "subject_job"))
    stored_by = {subject_job for _, subject_job in stored if subject_job}
    live = {str(pk) for pk in jobs.filter(pk__in=stored_by).values_list("pk", flat=True)}
    found |= live
    digests = {digest for digest, subject_job in stored if subject_job not in live}
    return found, tuple(sorted(digests))


def url_origin(url: str) -> str:
    """`scheme://host[:port]` of a URL: where it went, without the path, query or credentials that may
    name a person; "" when it has no host."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


def _any_contains(names: list[str], identifier: str) -> Q:
    query = Q()
    for name in names:
        query |= Q(**{f"{name}__icontains": identifier})
    return query


def _scrub(text: str, identifier: str) -> str:
    """Free text beside the content (a reason, an error): redacted, and the searched identifier blanked
    even where no detector recognises it (a name, a customer number)."""
    if not text:
        return text
    if identifier:
        text = re.sub(re.escape(identifier), ERASED_TEXT, text, flags=re.IGNORECASE)
    return redact(text)[0]
