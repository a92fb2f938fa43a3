"""A prompt full of personal data can hold a job without the application labelling it (issue 12, item 9):
the `detected:` condition is the set of kinds the redaction detectors find in the prompt."""

from __future__ import annotations

import pytest

from routing.decide.policy import load_policy
from routing.execute.facts import detected_kinds, job_facts
from routing.models import JobStatus
from tests.support.governed import POLICY, governed
from tests.support.workers import finished

HOLD_PERSONAL_DATA = (
    POLICY
    + """\
  - id: personal-data-in-prompt
    when: {detected: [email, iban]}
"""
)
IBAN = "DE89370400440532013000"
CONFIDENT = "[task:general] [confidence:mini=0.9,flagship=0.9]"


@pytest.mark.slow
def test_a_prompt_with_an_email_and_an_iban_is_held(model_server, workers):
    setup = governed(model_server.base_url, policy_source=HOLD_PERSONAL_DATA)
    workers.start()
    personal = setup.submit(f"{CONFIDENT} Refund ana.lopez@example.com to {IBAN} please", task_type="general")
    clean = setup.submit(f"{CONFIDENT} Which queue handles refunds?", task_type="general")
    personal, clean = finished(personal), finished(clean)
    assert personal.status == JobStatus.AWAITING_APPROVAL
    request = personal.approval_requests.get()
    assert request.rule_ids == ["personal-data-in-prompt"]
    assert request.reasons == ["a kind in [email, iban] is detected in the prompt (detected: [email, iban])"]
    assert clean.status == JobStatus.COMPLETED


def test_the_kinds_are_those_of_the_redaction_detectors_even_in_an_already_redacted_prompt():
    assert detected_kinds([f"write to ana@example.com, pay {IBAN}", "call +44 20 7946 0958"]) == (
        "email",
        "iban",
        "phone",
    )
    assert detected_kinds(["card 4111 1111 1111 1111"]) == ("card",)
    assert detected_kinds(["order 1234 5678 9012 3456, nothing personal"]) == ()
    # A prompt a submitter (or a redacted copy) already blanked still says what it held.
    assert detected_kinds(["write to [REDACTED:EMAIL]"]) == ("email",)


@pytest.mark.django_db
def test_detectors_run_only_for_a_policy_that_reads_detected(owner):
    from routing.models import Job

    assert load_policy(HOLD_PERSONAL_DATA).detects_personal_data
    assert not load_policy(POLICY).detects_personal_data
    job = Job(
        task_type="general",
        request={"messages": [{"role": "user", "content": [{"type": "text", "text": "mail ana@example.com"}]}]},
        application=owner.application,
    )
    assert job_facts(job, 0.0).detected == ("email",)
    assert job_facts(job, 0.0, detect=False).detected == ()


def test_detected_reads_every_text_sent_to_the_model():
    """`detected:` read only message `content`: an e-mail or IBAN in an earlier assistant turn's tool-call
    arguments (or a tool's result parts) is sent to the model too, and must count."""
    from routing.execute.facts import personal_data_kinds
    from routing.models import Job

    job = Job(
        request={
            "messages": [
                {"role": "user", "content": "please refund my last order"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {
                                "name": "lookup_customer",
                                "arguments": f'{{"email": "alice.smith@example.com", "iban": "{IBAN}"}}',
                            },
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "found"},
            ]
        }
    )
    assert {"email", "iban"} <= set(personal_data_kinds(job)), personal_data_kinds(job)
