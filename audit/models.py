"""The ledger's tables: events, their seals (the hash chain), signed checkpoints, and payloads.

An event row holds one thing written by the application: `canonical`, the exact canonical JSON
that is hashed. Every column a query filters on (time, type, actor, subject ids) is a column that
Postgres itself generates from `canonical`, so the indexed columns cannot disagree with the bytes
the chain covers, and verification has nothing to cross-check but hashes.

Seals are written by one sealer (`audit.sealer`) in the order (xact_id, id) a moment after commit;
events, seals and checkpoints refuse UPDATE, DELETE and TRUNCATE at the database. Payloads are not
evidence: erasure blanks their content, so that table is left writable.
"""

from __future__ import annotations

import json

import pgtrigger
from django.db import models
from django.db.models.expressions import RawSQL
from django.db.models.functions import Now

SUBJECT_KEYS = ("application", "approval", "job", "policy_version", "step")


def _event_field(path: str) -> RawSQL:
    # json (not jsonb) extraction: immutable, as a stored generated column needs, and half the parsing cost.
    return RawSQL(f"(canonical::json #>> '{{{path}}}')", ())  # noqa: S611 - constant paths only


def _append_only(prefix: str) -> list[pgtrigger.Trigger]:
    return [
        pgtrigger.Protect(name=f"{prefix}_no_update", operation=pgtrigger.Update),
        pgtrigger.Protect(name=f"{prefix}_no_delete", operation=pgtrigger.Delete),
        pgtrigger.Trigger(
            name=f"{prefix}_no_truncate",
            level=pgtrigger.Statement,
            when=pgtrigger.Before,
            operation=pgtrigger.Truncate,
            func="RAISE EXCEPTION 'arbiter ledger: % is append-only (TRUNCATE refused)', TG_TABLE_NAME;",
        ),
    ]


class LedgerEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    # The writer's top-level transaction id; the sealer chains events in (xact_id, id) order.
    xact_id = models.BigIntegerField(db_default=RawSQL("(pg_current_xact_id()::text::bigint)", ()), editable=False)
    canonical = models.TextField(editable=False)
    created_at = models.GeneratedField(
        expression=RawSQL("audit_event_time(canonical)", ()),
        output_field=models.DateTimeField(),
        db_persist=True,
    )
    event_type = models.GeneratedField(
        expression=_event_field("type"), output_field=models.TextField(), db_persist=True
    )
    actor_kind = models.GeneratedField(
        expression=_event_field("actor,kind"), output_field=models.TextField(), db_persist=True
    )
    actor_id = models.GeneratedField(
        expression=_event_field("actor,id"), output_field=models.TextField(), db_persist=True
    )
    subject_job = models.GeneratedField(
        expression=_event_field("subject,job"), output_field=models.TextField(null=True), db_persist=True
    )
    subject_step = models.GeneratedField(
        expression=_event_field("subject,step"), output_field=models.TextField(null=True), db_persist=True
    )
    subject_approval = models.GeneratedField(
        expression=_event_field("subject,approval"), output_field=models.TextField(null=True), db_persist=True
    )
    subject_policy_version = models.GeneratedField(
        expression=_event_field("subject,policy_version"),
        output_field=models.TextField(null=True),
        db_persist=True,
    )
    subject_application = models.GeneratedField(
        expression=_event_field("subject,application"),
        output_field=models.TextField(null=True),
        db_persist=True,
    )

    class Meta:
        indexes = [
            models.Index(fields=["xact_id", "id"], name="ledger_event_chain_order"),
            models.Index(fields=["created_at"], name="ledger_event_time"),
            *(
                models.Index(
                    fields=[f"subject_{key}", "xact_id", "id"],
                    name=f"ledger_event_{key}",
                    condition=models.Q(**{f"subject_{key}__isnull": False}),
                )
                for key in ("job", "application", "policy_version")
            ),
        ]
        triggers = _append_only("ledger_event")

    def __str__(self) -> str:
        return f"{self.event_type} #{self.pk}"

    @property
    def document(self) -> dict:
        return json.loads(self.canonical)

    @property
    def body(self):
        return self.document["body"]

    @property
    def subject(self) -> dict[str, str]:
        return self.document["subject"]


class LedgerSeal(models.Model):
    """One link of the chain: hash = SHA-256(prev_hash ‖ event_digest), event_digest = SHA-256(record)
    where record = {"event":<canonical>,"seq":<seq>} (see audit/EVIDENCE.md)."""

    seq = models.BigIntegerField(primary_key=True)
    # No foreign-key constraint: its check would lock every sealed event row, and the verifier
    # reports a seal whose event is gone anyway.
    event = models.OneToOneField(LedgerEvent, on_delete=models.DO_NOTHING, related_name="seal", db_constraint=False)
    prev_hash = models.BinaryField()
    event_digest = models.BinaryField()
    hash = models.BinaryField()
    sealed_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(seq__gte=1), name="ledger_seal_seq_positive"),
        ]
        triggers = _append_only("ledger_seal")

    def __str__(self) -> str:
        return f"seal {self.seq}"


class LedgerCheckpoint(models.Model):
    """A signed statement "the chain of ledger L had hash H at seq N at time T". `message` holds the
    exact signed bytes; the other columns are generated from it."""

    id = models.BigAutoField(primary_key=True)
    message = models.TextField()
    signature = models.TextField()
    public_key = models.TextField()
    seq = models.GeneratedField(
        expression=RawSQL("((message::json ->> 'seq')::bigint)", ()),
        output_field=models.BigIntegerField(),
        db_persist=True,
    )
    hash = models.GeneratedField(
        expression=RawSQL("(message::json ->> 'hash')", ()), output_field=models.TextField(), db_persist=True
    )
    created_at = models.GeneratedField(
        expression=RawSQL("audit_event_time(message)", ()),
        output_field=models.DateTimeField(),
        db_persist=True,
    )

    class Meta:
        indexes = [models.Index(fields=["seq"], name="ledger_checkpoint_seq")]
        triggers = _append_only("ledger_checkpoint")

    def __str__(self) -> str:
        return f"checkpoint {self.seq}"


class Payload(models.Model):
    """Redacted content (prompts, outputs, tool arguments) by the SHA-256 of that redacted content.
    Erasure blanks `content` and keeps the row, so the digest stays referable."""

    digest = models.CharField(max_length=64, primary_key=True)
    kind = models.CharField(max_length=32)
    content = models.TextField(blank=True)  # "" once erased
    size = models.IntegerField()
    redactions = models.IntegerField(default=0)
    created_at = models.DateTimeField(db_default=Now())
    last_stored_at = models.DateTimeField(db_default=Now())
    erased_at = models.DateTimeField(null=True)
    erasure_reason = models.TextField(blank=True, default="")

    class Meta:
        indexes = [
            models.Index(
                fields=["kind", "last_stored_at"],
                name="payload_retention",
                condition=models.Q(erased_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.digest[:12]}"


class PayloadReference(models.Model):
    """Which subject stored which payload; erasure by subject goes through these rows."""

    payload = models.ForeignKey(Payload, on_delete=models.PROTECT, related_name="references", db_column="digest")
    kind = models.CharField(max_length=32)
    subject_job = models.TextField(blank=True, default="")
    subject_step = models.TextField(blank=True, default="")
    subject_approval = models.TextField(blank=True, default="")
    subject_policy_version = models.TextField(blank=True, default="")
    subject_application = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [
            models.Index(fields=["subject_job"], name="payload_ref_job"),
            models.Index(fields=["subject_application"], name="payload_ref_application"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.payload_id[:12]}"
