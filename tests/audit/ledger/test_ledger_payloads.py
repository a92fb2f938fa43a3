"""Payloads: redacted before storage, keyed by digest, erasable without breaking the chain."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from audit import payloads
from audit.ledger import Actor, LedgerError
from audit.models import LedgerEvent, Payload
from audit.redaction import redact
from tests.audit.ledger.ledger_helpers import append_committed, committed_db

CARD = "4111 1111 1111 1111"  # passes Luhn
NOT_A_CARD = "1234567812345678"  # sixteen digits, fails Luhn


@pytest.mark.django_db
def test_it_stores_redacted_content_under_the_digest_of_what_it_stored():
    digest = payloads.store(
        f"Refund jane.doe@example.com on card {CARD}, order {NOT_A_CARD}",
        kind="prompt",
        subject={"job": "job-1", "application": "app-1"},
    )
    stored = payloads.load(digest)
    assert stored == "Refund [REDACTED:EMAIL] on card [REDACTED:CARD], order 1234567812345678"
    assert digest == hashlib.sha256(stored.encode()).hexdigest()
    assert "jane.doe" not in Payload.objects.get(digest=digest).content
    assert Payload.objects.get(digest=digest).redactions == 2


@pytest.mark.django_db
def test_it_redacts_the_strings_inside_json_content():
    digest = payloads.store(
        {"tool": "issue_refund", "args": {"iban": "DE89 3704 0044 0532 0130 00", "amount": 120}},
        kind="tool_args",
    )
    assert payloads.load(digest) == '{"args":{"amount":120,"iban":"[REDACTED:IBAN]"},"tool":"issue_refund"}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call +44 20 7946 0958 now", "call [REDACTED:PHONE] now"),
        ("call (415) 555-2671", "call [REDACTED:PHONE]"),
        ("IBAN GB82WEST12345698765432", "IBAN [REDACTED:IBAN]"),
        ("IBAN GB82WEST12345698765433", "IBAN GB82WEST12345698765433"),  # fails mod-97
        ("card 4111111111111111.", "card [REDACTED:CARD]."),
        ("dated 2024-01-15, build 1.2.3", "dated 2024-01-15, build 1.2.3"),
        ("ip 192.168.10.100", "ip 192.168.10.100"),
    ],
)
def test_the_built_in_detectors(text, expected):
    assert redact(text)[0] == expected


def employee_ids(text):
    import re

    return ((m.start(), m.end(), "EMPLOYEE") for m in re.finditer(r"EMP-\d{5}", text))


def test_extra_detectors_come_from_settings(settings):
    settings.ARBITER_REDACTORS = [f"{__name__}.employee_ids"]
    assert redact("ask EMP-12345 or bob@example.org")[0] == "ask [REDACTED:EMPLOYEE] or [REDACTED:EMAIL]"


@pytest.mark.django_db
def test_it_refuses_bad_kinds_and_json():
    with pytest.raises(LedgerError, match="payload kind"):
        payloads.store("x", kind="Prompt Text")
    with pytest.raises(LedgerError, match="NaN"):
        payloads.store({"score": float("nan")}, kind="output")
    with pytest.raises(Payload.DoesNotExist):
        payloads.load("0" * 64)


@committed_db
def test_erasure_removes_the_content_records_an_event_and_the_chain_still_verifies():
    digest = payloads.store(f"card {CARD} for jane@example.com", kind="prompt", subject={"job": "job-1"})
    other = payloads.store("unrelated", kind="prompt", subject={"job": "job-2"})
    append_committed(3, job="job-1", prompt=digest)

    erased = payloads.erase(subject={"job": "job-1"}, actor=Actor.user("dpo-7"), reason="GDPR request 123")

    assert erased == 1
    assert payloads.load(digest) is None
    assert Payload.objects.get(digest=digest).content == ""
    assert payloads.load(other) == "unrelated"
    event = LedgerEvent.objects.get(event_type="payload.erased")
    assert event.body == {"reason": "GDPR request 123", "count": 1, "digests": [digest]}
    assert (event.actor_kind, event.actor_id, event.subject_job) == ("user", "dpo-7", "job-1")
    assert (
        LedgerEvent.objects.filter(subject_job="job-1", event_type="job.step_finished").first().body["prompt"] == digest
    )
    out = StringIO()
    call_command("ledger_verify", stdout=out)
    assert "ledger intact: 4 events verified" in out.getvalue()


@committed_db
def test_retention_erases_expired_content_the_same_way(settings):
    settings.ARBITER_PAYLOAD_RETENTION = {"prompt": timedelta(days=30)}
    prompt = payloads.store("old prompt", kind="prompt")
    output = payloads.store("old output", kind="output")

    assert payloads.expire(now=datetime.now(UTC) + timedelta(days=29)) == 0
    assert payloads.expire(now=datetime.now(UTC) + timedelta(days=31)) == 1

    assert payloads.load(prompt) is None
    assert payloads.load(output) == "old output"  # no retention set for outputs: kept until erased
    event = LedgerEvent.objects.get(event_type="payload.erased")
    assert (event.actor_kind, event.actor_id, event.body["digests"]) == ("system", "retention", [prompt])
    out = StringIO()
    call_command("ledger_verify", stdout=out)
    assert "ledger intact" in out.getvalue()
