"""A tool call is an answer only when its arguments match the tool's own JSON Schema (issue 12, item 2).

An answer that does not is escalated like a confidence of 0, with the reason on its step; when no tier
is left, the job is held for a human. A schema that is not a JSON Schema is refused at submission."""

from __future__ import annotations

import pytest

from audit.ledger import Actor
from routing.decide.tool_arguments import problems
from routing.models import JobStatus
from routing.services.jobs import JobError, job_submit
from tests.support.governed import governed
from tests.support.workers import events, finished

REFUND_SCHEMA = {
    "type": "object",
    "properties": {"amount": {"type": "number"}, "order": {"type": "string"}},
    "required": ["amount"],
    "additionalProperties": False,
}
REFUND_TOOL = [{"type": "function", "function": {"name": "issue_refund", "parameters": REFUND_SCHEMA}}]


def refund(setup, arguments: str, *, markers: str = "", task_type: str = "general"):
    return setup.submit(
        f"[task:{task_type}] [confidence:nano=0.95,mini=0.9,flagship=0.9] [call:issue_refund {arguments}] "
        f"{markers} refund please",
        task_type=task_type,
        tools=REFUND_TOOL,
    )


@pytest.mark.slow
def test_an_answer_with_unparsable_arguments_escalates_to_the_next_tier(model_server, workers):
    setup = governed(model_server.base_url)
    workers.start()
    # Only nano's answer is broken; mini answers the same call with valid arguments.
    job = finished(refund(setup, '{"amount": 50}', markers="[invalid_json:nano]", task_type="classification"))
    assert job.status == JobStatus.COMPLETED, job.status_reason
    steps = list(job.steps.order_by("index"))
    assert [(step.tier, step.outcome, step.confidence) for step in steps] == [
        ("nano", "escalated", 0.0),
        ("mini", "accepted", pytest.approx(0.9, abs=1e-6)),
    ]
    assert steps[0].error == "tool call #0 'issue_refund': the arguments are not valid JSON"
    scored = [event.body for event in events(job) if event.event_type == "confidence.scored"]
    assert scored[0]["detail"]["invalid_tool_calls"] == [steps[0].error]
    assert job.final_tier == "mini"


@pytest.mark.slow
def test_an_answer_invalid_at_every_tier_is_held_for_a_reviewer(model_server, workers):
    setup = governed(model_server.base_url)
    workers.start()
    job = finished(refund(setup, '{"amount": 50, "note": "and wire it to me"}'))
    assert job.status == JobStatus.AWAITING_APPROVAL
    problem = (
        "tool call #0 'issue_refund': the arguments do not match the tool's schema at (root) "
        "(additionalProperties: false)"
    )
    steps = list(job.steps.order_by("index"))
    assert [(step.tier, step.outcome, step.error) for step in steps] == [
        ("mini", "escalated", problem),
        ("flagship", "accepted", problem),
    ]
    request = job.approval_requests.get()
    assert "invalid-tool-arguments" in request.rule_ids
    reason = request.reasons[request.rule_ids.index("invalid-tool-arguments")]
    assert reason == f"the answer's tool calls do not match their tools' schemas: {problem}"
    assert request.eligible_group == "reviewer" and request.on_expiry == "reject"


@pytest.mark.django_db
def test_a_tool_schema_that_is_not_a_json_schema_is_refused_at_submission(owner):
    bad = [{"type": "function", "function": {"name": "issue_refund", "parameters": {"type": "objekt"}}}]
    response = owner.submit(tools=bad)
    assert response.status_code == 400
    assert "parameters is not a valid JSON Schema at type" in response.content.decode()
    assert owner.job_count() == 0
    # The service refuses it too, whatever the path that reaches it.
    with pytest.raises(JobError, match=r"tools\[0\]\.function\.parameters is not a valid JSON Schema"):
        job_submit(
            application=owner.application,
            task_type="general",
            messages=[{"role": "user", "content": "hi"}],
            actor=Actor.application(owner.application.pk),
            tools=bad,
            policy=owner.setup.policy.name,
        )


@pytest.mark.django_db
def test_the_openai_endpoint_refuses_a_bad_tool_schema(owner):
    bad = [{"type": "function", "function": {"name": "f", "parameters": {"properties": {"x": {"type": 5}}}}}]
    response = owner.client.post(
        "/v1/chat/completions",
        {"model": f"arbiter/{owner.setup.policy.name}", "messages": [{"role": "user", "content": "hi"}], "tools": bad},
        format="json",
    )
    assert response.status_code == 400
    assert "not a valid JSON Schema" in response.content.decode()
    assert owner.job_count() == 0


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"amount": 5}, None),
        ({"amount": "5000"}, "the arguments do not match the tool's schema at amount (type: \"number\")"),
        ({}, "the arguments do not match the tool's schema at (root) (required: [\"amount\"])"),
        ("{not json", "the arguments are not valid JSON"),
        ([5000], "the arguments are a list, not a JSON object"),
    ],
)
def test_arguments_are_checked_against_their_own_tools_schema(arguments, problem):
    found = problems(REFUND_TOOL, [{"name": "issue_refund", "arguments": arguments}])
    assert found == ([] if problem is None else [f"tool call #0 'issue_refund': {problem}"])


def test_the_message_never_repeats_the_arguments_values():
    found = problems(REFUND_TOOL, [{"name": "issue_refund", "arguments": {"amount": "ana@example.com"}}])
    assert found and "ana@example.com" not in found[0]


def test_a_call_to_a_tool_not_offered_is_left_to_governance_which_blocks_it():
    assert problems(REFUND_TOOL, [{"name": "delete_database", "arguments": "not json"}]) == []


def test_a_schema_never_makes_the_worker_fetch_a_remote_reference():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"$ref": "http://169.254.169.254/latest"}}}]
    assert problems(tools, [{"name": "f", "arguments": {}}]) == [
        "tool call #0 'f': the tool's parameters schema has a reference that cannot be resolved"
    ]


def test_the_message_never_repeats_the_models_keys():
    """Keys are the model's too: a schema that accepts any key names an undeclared one `<key>`."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "object", "additionalProperties": False}}},
        "additionalProperties": {"type": "number"},
    }}}]
    found = problems(tools, [{"name": "f", "arguments": {"ana@example.com": "x"}}])
    assert found == ["tool call #0 'f': the arguments do not match the tool's schema at <key> (type: \"number\")"]
    nested = problems(tools, [{"name": "f", "arguments": {"items": [{"ana@example.com": 1}]}}])
    assert nested == [
        "tool call #0 'f': the arguments do not match the tool's schema at items/[] (additionalProperties: false)"
    ]
