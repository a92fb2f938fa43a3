"""Approval rules fail closed (issue 12, item 2): a tool call's arguments are model output, which a
prompt injection controls, so a rule that cannot evaluate them holds the job instead of passing it.

End to end through a real worker and the local model server, whose `[call:...]` marker makes the model
answer the tool call chosen here; and as a property of the pure rule evaluation for any JSON value."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.decide.approval_rules import ResultFacts, evaluate_approvals
from routing.decide.policy import load_policy
from routing.decide.router import JobFacts
from routing.models import Job, JobStatus
from tests.support.governed import governed
from tests.support.workers import finished

# The tool's schema accepts any object, so what is tested here is the rule, not schema validation.
LOOSE_REFUND_TOOL = [{"type": "function", "function": {"name": "issue_refund", "parameters": {"type": "object"}}}]
UNEVALUATED = "held because it cannot be evaluated"


def refund(setup, arguments: str, *, extra: str = "") -> Job:
    return setup.submit(
        f"[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {arguments}] {extra} refund please",
        task_type="general",
        tools=LOOSE_REFUND_TOOL,
    )


@pytest.mark.slow
def test_a_refund_whose_amount_cannot_be_compared_is_held(model_server, workers):
    setup = governed(model_server.base_url)
    workers.start()
    cases = {
        '{"amount": "5000"}': "args.amount is a string ('5000'); the condition compares with a number",
        '{"amount": {"value": 5000}}': "args.amount is an object; the condition compares with a number",
        '{"amount": [5000]}': "args.amount is a list; the condition compares with a number",
        '{"reason": "no amount at all"}': "args.amount is missing from the tool call",
    }
    jobs = {arguments: refund(setup, arguments) for arguments in cases}
    small = refund(setup, '{"amount": 50}')
    for arguments, why in cases.items():
        job = finished(jobs[arguments])
        assert job.status == JobStatus.AWAITING_APPROVAL, (arguments, job.status, job.status_reason)
        request = job.approval_requests.get()
        assert request.rule_ids == ["refunds-over-100"]
        assert request.required_approvers == 2
        assert request.reasons == [f"tool call #0 'issue_refund': {why}: {UNEVALUATED}"]
    # The same rule still lets a real small refund through: failing closed is not holding everything.
    assert finished(small).status == JobStatus.COMPLETED


@pytest.mark.slow
def test_a_refund_whose_arguments_do_not_parse_is_held(model_server, workers):
    setup = governed(model_server.base_url)
    workers.start()
    job = finished(refund(setup, '{"amount": 5000}', extra="[invalid_json]"))
    assert job.status == JobStatus.AWAITING_APPROVAL
    # Unparsable at every tier: the cascade escalated it, and the last tier's answer is held by the refund
    # rule (it cannot read the amount), the invalid-arguments rule, and - an invalid answer scoring 0 -
    # the policy's rule for answers still unsure after the flagship.
    assert [(step.tier, step.outcome) for step in job.steps.order_by("index")] == [
        ("mini", "escalated"),
        ("flagship", "accepted"),
    ]
    request = job.approval_requests.get()
    assert request.rule_ids == ["refunds-over-100", "unsure-after-flagship", "invalid-tool-arguments"]
    assert request.reasons[0] == (
        f"tool call #0 'issue_refund': the tool call's arguments are not valid JSON: {UNEVALUATED}"
    )
    assert request.required_approvers == 2 and request.on_expiry == "reject"


# ---------------------------------------------------------------- the property

POLICY = load_policy(
    """\
rules:
  - {id: default, cascade: [mini]}
approvals:
  - id: refunds-over-100
    when: {tool: issue_refund, args.amount: {gt: 100}}
"""
)
JOB = JobFacts("general", tools=("issue_refund",))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["100", "5000", "1e9", "", "NaN"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
ABSENT = object()


def is_a_real_number_at_most_100(value: object) -> bool:
    return type(value) in (int, float) and not math.isnan(value) and value <= 100


@given(amount=st.one_of(st.just(ABSENT), json_values), as_text=st.booleans())
def test_a_refund_rule_passes_only_a_real_number_at_most_100(amount, as_text):
    arguments = {} if amount is ABSENT else {"amount": amount}
    call = ("issue_refund", json.dumps(arguments) if as_text else arguments)
    decision = evaluate_approvals(POLICY, ResultFacts(job=JOB, tool_calls=(call,)))
    if decision.outcome == "pass":
        assert amount is not ABSENT and is_a_real_number_at_most_100(amount)
    else:
        assert [hold.rule_id for hold in decision.holds] == ["refunds-over-100"]
