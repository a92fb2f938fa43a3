"""Writing to the ledger: `append` one event inside the transaction of the change it records.

    from audit import ledger
    from audit.ledger import Actor

    with transaction.atomic():
        job = Job.objects.create(...)
        ledger.append("job.submitted", actor=Actor.application(app.id),
                      subject={"job": job.id, "application": app.id}, body={"priority": "high"})

Several events of one change (a model call, its score, the job's outcome) can go in one multi-row
INSERT with `append_many([Entry(...), ...])`, in that order; each is the same event `append` would write.

The event row is a plain INSERT: writers never wait for one another. It is chained (given its
gapless `seq`, `prev_hash` and `hash`) a moment after commit by the sealer (`audit.sealer`), which
runs right after this transaction commits and, as a backstop, every second from Celery beat.

Body values must be JSON types: str, int, float (finite), bool, None, lists and dicts with string
keys. Decimal, UUID, datetime and other objects are refused rather than converted, because the
caller knows which textual form is the meaningful one (`str(amount)`, `dt.isoformat()`); a guess
here would be hashed forever.

Nothing personal goes into a body: prompts, outputs, labels and edits go in as payload digests
(`audit.payloads.store`), and the free-text fields (`reason`, `error`, ...: audit.redaction.FREE_TEXT_KEYS)
are redacted here before hashing, because an event can never be erased.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import connection, transaction

from audit.errors import LedgerError
from audit.models import SUBJECT_KEYS, LedgerEvent
from audit.redaction import redact_free_text

ACTOR_KINDS = ("user", "application", "worker", "system")
MAX_CANONICAL_BYTES = 64 * 1024
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_INSERT = "INSERT INTO audit_ledgerevent (canonical) VALUES (%s) RETURNING id, xact_id"
# Ids are drawn as the ordered rows are inserted, so the chain keeps the list's order.
_INSERT_MANY = (
    "INSERT INTO audit_ledgerevent (canonical) "
    "SELECT canonical FROM unnest(%s::text[]) WITH ORDINALITY AS given(canonical, position) ORDER BY position"
)


@dataclass(frozen=True)
class Actor:
    kind: str
    id: str

    def __post_init__(self) -> None:
        if self.kind not in ACTOR_KINDS:
            raise LedgerError(f"actor kind {self.kind!r} must be one of {', '.join(ACTOR_KINDS)}")
        if not isinstance(self.id, str) or not self.id or len(self.id) > 200:
            raise LedgerError(f"actor id must be a non-empty string of at most 200 characters, got {self.id!r}")

    @classmethod
    def user(cls, user_id: object) -> Actor:
        return cls("user", _id_text(user_id, "actor id"))

    @classmethod
    def application(cls, application_id: object) -> Actor:
        return cls("application", _id_text(application_id, "actor id"))

    @classmethod
    def worker(cls, name: str) -> Actor:
        return cls("worker", _id_text(name, "actor id"))

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls("system", _id_text(name, "actor id"))


@dataclass(frozen=True)
class Entry:
    """One event for `append_many`."""

    event_type: str
    actor: Actor
    subject: dict = field(default_factory=dict)
    body: dict = field(default_factory=dict)


def _require_transaction(event_type: str) -> None:
    if not connection.in_atomic_block:
        raise LedgerError(
            f"ledger.append({event_type!r}) must be called inside transaction.atomic(): an event is written "
            "in the same transaction as the change it records, so that a rollback leaves neither"
        )


def append_many(entries: Sequence[Entry]) -> None:
    """Write the events in one statement, in the given order, in the current transaction. All are
    checked before any is written: one bad event writes none."""
    if not entries:
        return
    _require_transaction(entries[0].event_type)
    time = datetime.now(UTC)
    texts = [
        canonical_event(
            event_type=entry.event_type, actor=entry.actor, subject=entry.subject, body=entry.body, time=time
        )
        for entry in entries
    ]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_MANY, [texts])
    _seal_after_commit()


def append(event_type: str, *, actor: Actor, subject: dict | None = None, body: dict | None = None) -> LedgerEvent:
    """Write one event in the current transaction; it is sealed into the chain after commit."""
    _require_transaction(event_type)
    time = datetime.now(UTC)
    canonical = canonical_event(event_type=event_type, actor=actor, subject=subject or {}, body=body or {}, time=time)
    with connection.cursor() as cursor:
        cursor.execute(_INSERT, [canonical])
        event_id, xact_id = cursor.fetchone()
    _seal_after_commit()
    document_subject = _subjects(subject or {})
    return LedgerEvent(
        id=event_id,
        xact_id=xact_id,
        canonical=canonical,
        created_at=time,
        event_type=event_type,
        actor_kind=actor.kind,
        actor_id=actor.id,
        **{f"subject_{key}": document_subject.get(key) for key in SUBJECT_KEYS},
    )


def canonical_event(*, event_type: str, actor: Actor, subject: dict, body: dict, time: datetime) -> str:
    """The exact text that is hashed: sorted keys, no whitespace, UTF-8 without escapes."""
    if not isinstance(event_type, str) or not _EVENT_TYPE.match(event_type) or len(event_type) > 64:
        raise LedgerError(f"event type {event_type!r} must look like 'job.submitted' (lowercase, dotted)")
    if not isinstance(actor, Actor):
        raise LedgerError("actor must be an audit.ledger.Actor (Actor.user(id), Actor.system(name), ...)")
    if not isinstance(body, dict):
        raise LedgerError(f"body must be a dict, got {type(body).__name__}")
    validate_json(body, "body")
    document = {
        "actor": {"id": actor.id, "kind": actor.kind},
        # The chain cannot be edited, so nothing personal may enter it: free text is redacted here, on
        # the one road into it, whichever service wrote the event (content itself goes in as digests).
        "body": redact_free_text(body),
        "subject": _subjects(subject),
        "time": format_time(time),
        "type": event_type,
    }
    text = canonical_json(document)
    if len(text.encode("utf-8")) > MAX_CANONICAL_BYTES:
        raise LedgerError(
            f"event {event_type!r} is larger than {MAX_CANONICAL_BYTES // 1024} KiB: keep prompts, outputs and "
            "other bulky content in audit.payloads.store() and put the digest in the body"
        )
    return text


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def format_time(time: datetime) -> str:
    if time.tzinfo is None:
        raise LedgerError("event time must be timezone-aware")
    return time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _subjects(subject: dict) -> dict[str, str]:
    if not isinstance(subject, dict):
        raise LedgerError(f"subject must be a dict, got {type(subject).__name__}")
    unknown = set(subject) - set(SUBJECT_KEYS)
    if unknown:
        raise LedgerError(f"unknown subject keys {sorted(unknown)}; use {', '.join(SUBJECT_KEYS)}")
    return {key: _id_text(value, f"subject[{key!r}]") for key, value in subject.items() if value is not None}


def _id_text(value: object, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | uuid.UUID):
        raise LedgerError(f"{what} must be a str, int or UUID, got {type(value).__name__}")
    text = str(value)
    if not text or len(text) > 200 or "\x00" in text:
        raise LedgerError(f"{what} must be 1 to 200 characters without NUL, got {text[:40]!r}")
    return text


def validate_json(value: object, path: str) -> None:
    """Refuse anything whose JSON form is not exact and portable; `path` names the value in errors."""
    # Exact type checks: a str or int subclass (an enum, a lazy translation) could serialise differently.
    # `type(value) is ...` each time rather than once into a variable: it is what narrows `value` for mypy.
    if value is None or type(value) is bool or type(value) is int:
        return
    if type(value) is float:
        if not math.isfinite(value):
            raise LedgerError(f"{path} is {value!r}: NaN and Infinity are not JSON; pass None or a string")
        return
    if type(value) is str:
        if "\x00" in value:
            raise LedgerError(f"{path} contains a NUL character, which Postgres JSON cannot store")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise LedgerError(f"{path} is not valid Unicode (a lone surrogate)") from None
        return
    if type(value) is list or type(value) is tuple:
        for index, item in enumerate(value):
            validate_json(item, f"{path}[{index}]")
        return
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise LedgerError(f"{path} has a non-string key {key!r}; JSON keys are strings")
            validate_json(key, f"{path} key")
            validate_json(item, f"{path}[{key!r}]")
        return
    raise LedgerError(
        f"{path} is a {type(value).__name__}, which is not a JSON type: convert it yourself "
        "(Decimal -> str(amount), UUID -> str(id), datetime -> dt.isoformat())"
    )


def _seal_after_commit() -> None:
    from audit import sealer

    # One sealing attempt per transaction, however many events it writes.
    if not any(entry[1] is sealer.seal_after_commit for entry in connection.run_on_commit):  # (sids, func, robust)
        transaction.on_commit(sealer.seal_after_commit, robust=True)
