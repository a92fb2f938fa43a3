"""Issue 12, item 9: what cannot be erased (the ledger) and what is kept for the record (the payload
store) never hold a customer's e-mail, phone, IBAN or card number raw — not from the prompt, the labels,
the metadata, the model's answer, a reviewer's reason, nor a reviewer's edit."""

from __future__ import annotations

import json
import re

import pytest
from django.db import transaction

from audit import ledger, payloads, redaction
from audit.ledger import Actor
from audit.models import LedgerEvent
from controlplane.roles import Role
from review.services import approval_approve, approval_override
from routing.models import ApprovalDecision, JobStatus
from tests.security.personal_data import Customer, held_refund, ledger_texts, payload_texts
from tests.support.factories import UserFactory
from tests.support.governed import governed

pytestmark = pytest.mark.slow


@pytest.fixture
def reviewers(live_db):
    return UserFactory(roles=[Role.REVIEWER]), UserFactory(roles=[Role.REVIEWER])


def _assert_nothing_raw(texts: list[str], customer: Customer) -> None:
    assert texts, "nothing to inspect: the test would pass vacuously"
    for text in texts:
        for raw in customer.raw_values:
            assert raw.lower() not in text.lower(), f"{raw!r} kept raw in {text[:300]}"


def test_labels_and_metadata_are_stored_redacted_and_routing_still_reads_them(model_server, workers):
    customer = Customer.new()
    setup = governed(model_server.base_url)
    workers.start()
    job = held_refund(setup, customer)

    assert job.status == JobStatus.AWAITING_APPROVAL
    assert job.labels == {"region": "eu", "customer": "[REDACTED:EMAIL]", "phone": "[REDACTED:PHONE]"}
    assert job.metadata == {"iban": "[REDACTED:IBAN]", "card": "[REDACTED:CARD]", "note": "contact [REDACTED:EMAIL]"}
    # `region: eu` is no personal data: the EU rule still routes the job to EU deployments only.
    route = LedgerEvent.objects.get(subject_job=str(job.pk), event_type="route.decided")
    assert route.body["rule_id"] == "eu-data"
    assert {step.deployment.region for step in job.steps.all()} == {"eu"}
    submitted = LedgerEvent.objects.get(subject_job=str(job.pk), event_type="job.submitted")
    assert submitted.body["labels"] == job.labels
    # The model needs the request as written: it is the one raw copy, and erasure blanks it.
    assert customer.email in json.dumps(job.request)


def test_no_ledger_event_and_no_payload_holds_the_raw_values_after_review(model_server, workers, reviewers):
    first, second = reviewers
    customer = Customer.new()
    setup = governed(model_server.base_url)
    workers.start()
    approved = held_refund(setup, customer)
    overridden = held_refund(setup, customer)
    assert approved.status == overridden.status == JobStatus.AWAITING_APPROVAL
    # The model's answer echoes the customer's data in its tool call.
    assert approved.result["output"]["tool_calls"][0]["arguments"]["email"] == customer.email

    approval_approve(job=approved, user=first, reason=f"called {customer.email} on {customer.phone} to check")
    approval_approve(job=approved, user=second)
    edit = {
        "content": None,
        "tool_calls": [{"id": "edit-1", "name": "issue_refund", "arguments": customer.arguments(99)}],
    }
    approval_override(job=overridden, user=first, reason=f"customer {customer.email} asked for 99", output=edit)

    for job in (approved, overridden):
        _assert_nothing_raw(ledger_texts(job), customer)
        _assert_nothing_raw(payload_texts(job), customer)

    approval = LedgerEvent.objects.get(
        subject_job=str(approved.pk), event_type="approval.approved", actor_id=str(first.pk)
    )
    assert approval.body["reason"] == "called [REDACTED:EMAIL] on [REDACTED:PHONE] to check"
    override = LedgerEvent.objects.get(subject_job=str(overridden.pk), event_type="approval.overridden")
    assert all(re.fullmatch(r"[0-9a-f]{64}", override.body[side]) for side in ("before", "after"))
    after = json.loads(payloads.load(override.body["after"]))
    assert after["output"]["tool_calls"][0]["arguments"] == {
        "amount": 99,
        "email": "[REDACTED:EMAIL]",
        "phone": "[REDACTED:PHONE]",
        "iban": "[REDACTED:IBAN]",
        "card": "[REDACTED:CARD]",
    }
    # The edit itself lives only in the reviewer's decision row: an operational copy erasure blanks.
    decision = ApprovalDecision.objects.get(request__job=overridden, kind="override")
    assert decision.override["output"] == edit


def test_the_ledger_redacts_free_text_and_leaves_digests_alone(live_db):
    customer = Customer.new()
    # A digest made of digits that pass the Luhn check would look like a card number to the detector.
    digest = "4111111111111111" + "a" * 48
    with transaction.atomic():
        event = ledger.append(
            "test.free_text",
            actor=Actor.system("test"),
            body={
                "reason": f"asked by {customer.email}",
                "holds": [{"reason": f"iban {customer.iban}", "rule": "r-1"}],
                "error": f"provider said: unknown card {customer.card}",
                "output": digest,
            },
        )
    body = LedgerEvent.objects.get(pk=event.id).body
    assert body["reason"] == "asked by [REDACTED:EMAIL]"
    assert body["holds"] == [{"reason": "iban [REDACTED:IBAN]", "rule": "r-1"}]
    assert body["error"] == "provider said: unknown card [REDACTED:CARD]"
    assert body["output"] == digest


def test_detection_names_the_kinds_of_personal_data_a_request_carries(live_db):
    customer = Customer.new()
    request = {"messages": [{"role": "user", "content": customer.prompt()}], "labels": {"region": "eu"}}
    assert redaction.detected(request) == {"EMAIL", "PHONE", "IBAN", "CARD"}
    assert redaction.detected({"region": "eu", "order": "1234 5678 9012 3456"}) == frozenset()  # fails Luhn


@pytest.mark.django_db
def test_a_label_name_carrying_an_email_never_enters_the_ledger():
    """Label *names* were kept raw (redact_value kept keys) in the job.submitted ledger body, which can
    never be erased. A service called directly (not through the API) redacts them."""
    from routing.services.jobs import job_submit

    setup = governed("http://127.0.0.1:9/v1")
    job, _ = job_submit(
        application=setup.application,
        task_type="classification",
        messages=[{"role": "user", "content": "hello"}],
        actor=Actor.application(setup.application.pk),
        policy=setup.policy.name,
        labels={"customer:alice.smith@example.com": True, "region": "eu"},
        dispatch=False,
    )
    canonical = LedgerEvent.objects.get(subject_job=str(job.pk), event_type="job.submitted").canonical
    assert "alice.smith@example.com" not in canonical, canonical
    assert job.labels == {"customer:[REDACTED:EMAIL]": True, "region": "eu"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("customer:alice.smith@example.com", "must be 1-64 characters of letters, digits and _ . : -"),
        ("card:4111111111111111", "contains personal data (card)"),
        ("x" * 65, "must be 1-64 characters"),
    ],
)
def test_the_api_refuses_a_label_name_that_is_not_a_plain_name(owner, name, says):
    response = owner.submit(labels={name: True})
    assert response.status_code == 400
    text = response.content.decode()
    assert says in text and "label name" in text
    assert "alice.smith@example.com" not in text and "4111111111111111" not in text  # not echoed either


def test_redacting_a_value_redacts_its_keys_too():
    value, found = redaction.redact_value({"a@example.com": 1, "b@example.com": {"ok": "c@example.com"}, "ok": 2})
    assert value == {"[REDACTED:EMAIL]": 1, "[REDACTED:EMAIL]#2": {"ok": "[REDACTED:EMAIL]"}, "ok": 2}
    assert found == 3


def test_a_blocked_tool_calls_name_from_the_model_is_not_kept_raw_in_the_ledger(model_server, workers):
    """The model (prompt injection) names a tool after a card number; the call is blocked, and the
    tool_call.blocked event kept `blocked[].tool` raw (only `reason` keys are redacted), for ever."""
    from tests.support.governed import REFUND_TOOL
    from tests.support.workers import finished

    setup = governed(model_server.base_url)
    workers.start()
    card = "4111111111111111"  # Luhn-valid
    job = finished(
        setup.submit(
            f"[task:general] [confidence:mini=0.9,flagship=0.9] [call:{card} {{}}] x",
            task_type="general",
            tools=REFUND_TOOL,
        )
    )
    assert job.status == JobStatus.BLOCKED
    event = LedgerEvent.objects.get(subject_job=str(job.pk), event_type="tool_call.blocked")
    assert card not in event.canonical, event.canonical
    assert [(b["tool"], len(b["tool_sha256"])) for b in event.body["blocked"]] == [("<not offered>", 64)]
    job.refresh_from_db()
    assert card not in job.status_reason
