"""Prompts, outputs and tool arguments, kept apart from events and referred to by digest.

    digest = payloads.store(prompt_text, kind="prompt", subject={"job": job.id, "application": app.id})
    ledger.append("model.called", ..., body={"prompt": digest, ...})

Content is redacted (audit.redaction) *before* anything is written, and the digest is the SHA-256
of the redacted content's UTF-8 bytes (JSON content: of its canonical JSON). So the original never
touches disk, and the same redacted content is one row whoever stored it (each store also records a
reference row: which subject stored it, for erasure).

Erasure (a data-protection request) and retention (ARBITER_PAYLOAD_RETENTION) blank the content and
keep the row: the digest stays referable, `load` returns None, and every erasure is itself a
`payload.erased` event. Events only hold digests, so the chain verifies unchanged afterwards.
Erasing a shared content erases it for everyone who stored it; storing the same content again
later (new processing) brings it back.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet

from audit import ledger
from audit.ledger import Actor, LedgerError, canonical_json, validate_json
from audit.models import SUBJECT_KEYS, Payload, PayloadReference
from audit.redaction import redact, redact_value

_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_DIGESTS_PER_EVENT = 1000

# The content (kept once per digest) and who stored it, in one statement: a data-modifying CTE. The
# reference's foreign key is checked at commit, after both rows exist.
_STORE = """
WITH stored AS (
    INSERT INTO audit_payload (digest, kind, content, size, redactions, created_at, last_stored_at, erasure_reason)
    VALUES (%(digest)s, %(kind)s, %(content)s, %(size)s, %(redactions)s, now(), now(), '')
    ON CONFLICT (digest) DO UPDATE
       SET last_stored_at = now(), content = EXCLUDED.content, erased_at = NULL, erasure_reason = ''
     WHERE audit_payload.erased_at IS NOT NULL OR audit_payload.last_stored_at < now() - interval '1 hour'
)
INSERT INTO audit_payloadreference (digest, kind, subject_job, subject_step, subject_approval,
                                    subject_policy_version, subject_application, created_at)
VALUES (%(digest)s, %(kind)s, %(subject_job)s, %(subject_step)s, %(subject_approval)s,
        %(subject_policy_version)s, %(subject_application)s, now())
"""
_NO_SUBJECT = {f"subject_{key}": "" for key in SUBJECT_KEYS}


def store(content: object, *, kind: str, subject: dict | None = None) -> str:
    """Redact and keep `content` (a str, or a JSON value whose strings are redacted); returns its digest."""
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise LedgerError(f"payload kind {kind!r} must be a short lowercase name such as 'prompt'")
    references = _subject_columns(subject or {})
    if isinstance(content, str):
        text, redactions = redact(content)
    else:
        validate_json(content, "content")
        redacted, redactions = redact_value(content)
        text = canonical_json(redacted)
    data = text.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    parameters: dict[str, str | int] = {
        "digest": digest,
        "kind": kind,
        "content": text,
        "size": len(data),
        "redactions": redactions,
    }
    with connection.cursor() as cursor:
        cursor.execute(_STORE, {**parameters, **_NO_SUBJECT, **references})
    return digest


def load(digest: str) -> str | None:
    """The redacted content, or None once erased. Raises Payload.DoesNotExist for an unknown digest."""
    payload = Payload.objects.only("content", "erased_at").get(digest=digest)
    return None if payload.erased_at is not None else payload.content


def erase(*, subject: dict, actor: Actor, reason: str) -> int:
    """Blank the content of every payload the subject stored; returns how many were erased."""
    references = _subject_columns(subject)
    if not references:
        raise LedgerError("erase needs a subject, e.g. {'job': job_id} or {'application': app_id}")
    if not reason or not reason.strip():
        raise LedgerError("erase needs a reason (e.g. the data-protection request's reference)")
    with transaction.atomic():
        digests = PayloadReference.objects.filter(**references).values("payload_id")
        erased = _erase(Payload.objects.filter(digest__in=digests), reason)
        _record(erased, actor=actor, subject=subject, reason=reason)
    return len(erased)


def erase_digests(digests: list[str], *, actor: Actor, reason: str) -> int:
    """Blank the named payloads (those a search for a data subject's identifier found); returns the count."""
    if not reason or not reason.strip():
        raise LedgerError("erase needs a reason (e.g. the data-protection request's reference)")
    with transaction.atomic():
        erased = _erase(Payload.objects.filter(digest__in=list(digests)), reason)
        if erased:
            _record(erased, actor=actor, subject={}, reason=reason)
    return len(erased)


def expire(*, now: datetime | None = None, batch_size: int = 1000) -> int:
    """Erase content older than its kind's retention (ARBITER_PAYLOAD_RETENTION); returns the count."""
    now = now or datetime.now(UTC)
    total = 0
    for kind, retention in settings.ARBITER_PAYLOAD_RETENTION.items():
        reason = f"retention: {kind} kept {retention.days}d {retention.seconds}s"
        while True:
            with transaction.atomic():
                expired = (
                    Payload.objects.filter(kind=kind, erased_at__isnull=True, last_stored_at__lt=now - retention)
                    .select_for_update(skip_locked=True)
                    .values_list("digest", flat=True)[:batch_size]
                )
                erased = _erase(Payload.objects.filter(digest__in=list(expired)), reason)
                if erased:
                    _record(erased, actor=Actor.system("retention"), subject={}, reason=reason)
            total += len(erased)
            if len(erased) < batch_size:
                break
    return total


def _erase(payloads: QuerySet[Payload], reason: str) -> list[str]:
    digests = sorted(payloads.filter(erased_at__isnull=True).select_for_update().values_list("digest", flat=True))
    Payload.objects.filter(digest__in=digests).update(content="", erased_at=datetime.now(UTC), erasure_reason=reason)
    return digests


def _record(digests: list[str], *, actor: Actor, subject: dict, reason: str) -> None:
    chunks = [digests[i : i + _DIGESTS_PER_EVENT] for i in range(0, len(digests), _DIGESTS_PER_EVENT)] or [[]]
    for chunk in chunks:
        ledger.append(
            "payload.erased",
            actor=actor,
            subject=subject,
            body={"reason": reason, "count": len(chunk), "digests": chunk},
        )


def _subject_columns(subject: dict) -> dict[str, str]:
    if not isinstance(subject, dict) or set(subject) - set(SUBJECT_KEYS):
        raise LedgerError(f"subject keys must be among {', '.join(SUBJECT_KEYS)}")
    return {f"subject_{key}": str(value) for key, value in subject.items() if value is not None}
