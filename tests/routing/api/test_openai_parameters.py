"""The Chat Completions parameter surface through the real openai SDK against a live Arbiter: each
`tool_choice` does what OpenAI documents (and a forced call is governed like any), logprobs come back,
what did not shape the answer is named in `x-arbiter-ignored-params`, `n > 1` is refused by name, and
structured outputs through `parse` work. The jobs API takes the same parameters, checked by the same code."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel

from audit.models import LedgerEvent
from routing.models import Job, JobStatus
from tests.support.compat import compat
from tests.support.live import deployment_without, live_arbiter
from tests.support.personas import client_with
from tests.support.workers import finished

pytestmark = pytest.mark.slow

LOOKUP = {"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}
REFUND = {
    "type": "function",
    "function": {
        "name": "issue_refund",
        "parameters": {
            "type": "object",
            "properties": {"amount": {"type": "integer", "minimum": 500}},
            "required": ["amount"],
        },
    },
}
TOOLS = [LOOKUP, REFUND]
CONFIDENT = "[task:general] [confidence:mini=0.9,flagship=0.9]"
MARKED = f'{CONFIDENT} [call:lookup_order {{"order": "A-1"}}] Where is my parcel?'
PLAIN = f"{CONFIDENT} Where is my parcel?"


@pytest.fixture(scope="module")
def arbiter(django_db_setup, django_db_blocker, model_server):
    with django_db_blocker.unblock():
        yield from live_arbiter(model_server.base_url)


@pytest.fixture
def sdk(arbiter, live_db) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{arbiter.url}/v1", api_key=arbiter.key, max_retries=0, timeout=60)


def ask(sdk: openai.OpenAI, content: str, **fields):
    return sdk.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": content}],
        extra_headers={"x-arbiter-task-type": "general"},
        **fields,
    )


def called(completion) -> list[str]:
    return [call.function.name for call in completion.choices[0].message.tool_calls or []]


@pytest.mark.django_db
def test_the_database_is_set_up():
    pass  # the django_db test that makes pytest-django create the test database for this module


@compat("openai", "tools", "each `tool_choice`")
def test_tool_choice_none_yields_no_tool_call_even_when_the_model_would_call(sdk):
    completion = ask(sdk, MARKED, tools=TOOLS, tool_choice="none").parse()
    assert called(completion) == []
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content


@compat("openai", "tools", "each `tool_choice`")
def test_tool_choice_auto_leaves_it_to_the_model(sdk):
    assert called(ask(sdk, MARKED, tools=TOOLS, tool_choice="auto").parse()) == ["lookup_order"]
    assert called(ask(sdk, PLAIN, tools=TOOLS, tool_choice="auto").parse()) == []


@compat("openai", "tools", "each `tool_choice`")
def test_tool_choice_required_yields_a_tool_call(sdk):
    raw = ask(sdk, PLAIN, tools=[LOOKUP], tool_choice="required")
    completion = raw.parse()
    assert called(completion) == ["lookup_order"]
    assert completion.choices[0].finish_reason == "tool_calls"
    job = Job.objects.get(pk=raw.headers["x-arbiter-job-id"])
    assert job.request["parameters"] == {"tool_choice": "required"}
    assert job.status == JobStatus.COMPLETED


@compat("openai", "tools", "each `tool_choice`")
def test_tool_choice_naming_a_function_calls_that_function(sdk):
    choice = {"type": "function", "function": {"name": "lookup_order"}}
    completion = ask(sdk, PLAIN, tools=TOOLS, tool_choice=choice, parallel_tool_calls=False).parse()
    assert called(completion) == ["lookup_order"]


def test_a_forced_tool_call_is_governed_like_any_other(sdk, arbiter):
    # The policy holds refunds over 100; forcing the call does not get around the approval rule.
    choice = {"type": "function", "function": {"name": "issue_refund"}}
    with pytest.raises(openai.ConflictError) as raised:
        ask(sdk, PLAIN, tools=TOOLS, tool_choice=choice, logprobs=True)
    assert raised.value.code == "approval_required"
    assert "logprobs" not in raised.value.response.text  # nor its tokens
    job = Job.objects.get(pk=raised.value.body["job_id"])
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert job.result["output"]["tool_calls"][0]["arguments"]["amount"] >= 500
    assert job.result["output"]["logprobs"]["content"]  # kept with the held answer, released only with it
    assert "issue_refund" not in raised.value.response.text  # the held answer is not released
    requested = LedgerEvent.objects.get(subject_job=str(job.pk), event_type="approval.requested")
    assert "refunds-over-100" in json.dumps(requested.body)


def test_tool_choice_must_name_an_offered_function_and_needs_tools(sdk):
    with pytest.raises(openai.BadRequestError) as raised:
        ask(sdk, PLAIN, tools=[LOOKUP], tool_choice={"type": "function", "function": {"name": "issue_refund"}})
    assert "not among the tools" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        ask(sdk, PLAIN, tool_choice="required")
    assert "only allowed when tools are given" in raised.value.message


def test_logprobs_come_back_when_asked(sdk):
    completion = ask(sdk, PLAIN, logprobs=True, top_logprobs=2).parse()
    tokens = completion.choices[0].logprobs.content
    assert "".join(token.token for token in tokens) == completion.choices[0].message.content
    assert all(len(token.top_logprobs) == 2 for token in tokens)
    # The policy asks for logprobs itself (to score confidence); a caller who did not ask gets none.
    assert ask(sdk, PLAIN).parse().choices[0].logprobs is None


def test_the_newer_parameters_are_accepted_and_unknown_ones_still_refused(sdk):
    raw = ask(
        sdk,
        PLAIN,
        reasoning_effort="low",
        service_tier="auto",
        prompt_cache_key="tenant-7",
        safety_identifier="user-hash-1",
        logit_bias={"1734": -100},
        max_completion_tokens=200,
        stop=["\n\n\n"],
        seed=7,
        user="someone",
        temperature=0.2,
    )
    assert raw.parse().choices[0].message.content
    assert "x-arbiter-ignored-params" not in raw.headers  # the deployment takes every one of them
    with pytest.raises(openai.BadRequestError) as raised:
        ask(sdk, PLAIN, extra_body={"temperatur": 0.2})
    assert "unknown field" in raised.value.message


def test_what_the_policy_decides_is_named_in_a_header(sdk):
    raw = ask(sdk, PLAIN, store=True)
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-arbiter-ignored-params"] == "store"


def test_a_parameter_the_deployment_does_not_take_is_not_sent_and_is_named(sdk, arbiter):
    with deployment_without(arbiter.setup.deployments["mini"], "temperature", "logit_bias"):
        raw = ask(sdk, PLAIN, temperature=0.3, seed=3, logit_bias={"50256": -100}, store=False)
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-arbiter-final-tier"] == "mini"
    assert raw.headers["x-arbiter-ignored-params"] == "logit_bias, store, temperature"
    called_event = LedgerEvent.objects.get(subject_job=raw.headers["x-arbiter-job-id"], event_type="model.called")
    assert called_event.body["parameters_dropped"] == ["temperature", "logit_bias"]


def test_n_above_one_is_refused_naming_why(sdk, arbiter):
    before = Job.objects.filter(application=arbiter.setup.application).count()
    with pytest.raises(openai.BadRequestError) as raised:
        ask(sdk, PLAIN, n=2)
    assert "n > 1 is not served" in raised.value.message
    assert Job.objects.filter(application=arbiter.setup.application).count() == before
    assert ask(sdk, PLAIN, n=1).parse().choices[0].message.content


class Ticket(BaseModel):
    label: str
    confidence: float


@compat("openai", "structured output", "`chat.completions.parse`")
def test_structured_outputs_through_parse_give_a_pydantic_object(sdk):
    completion = sdk.chat.completions.parse(
        model="auto",
        messages=[{"role": "user", "content": f"{CONFIDENT} Classify: card charged twice"}],
        response_format=Ticket,
        extra_headers={"x-arbiter-task-type": "general"},
    )
    ticket = completion.choices[0].message.parsed
    assert isinstance(ticket, Ticket)
    assert json.loads(completion.choices[0].message.content) == ticket.model_dump()


@compat("openai", "structured output", "`pydantic_function_tool`")
def test_a_tool_choice_through_parse_with_a_pydantic_tool(sdk):
    # instructor's and LangChain's function-calling structured output: a strict tool, forced by name.
    tool = openai.pydantic_function_tool(Ticket)
    completion = sdk.chat.completions.parse(
        model="auto",
        messages=[{"role": "user", "content": f"{CONFIDENT} Classify: card charged twice"}],
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "Ticket"}},
        extra_headers={"x-arbiter-task-type": "general"},
    )
    call = completion.choices[0].message.tool_calls[0]
    assert isinstance(call.function.parsed_arguments, Ticket)


def test_the_async_sdk_forces_a_tool_call_too(arbiter, live_db):
    import asyncio

    async def forced():
        async with openai.AsyncOpenAI(
            base_url=f"{arbiter.url}/v1", api_key=arbiter.key, max_retries=0, timeout=60
        ) as client:
            return await client.chat.completions.create(
                model="auto",
                messages=[{"role": "user", "content": PLAIN}],
                tools=TOOLS,
                tool_choice={"type": "function", "function": {"name": "lookup_order"}},
                logprobs=True,
                extra_headers={"x-arbiter-task-type": "general"},
            )

    completion = asyncio.run(forced())
    assert called(completion) == ["lookup_order"]
    assert completion.choices[0].logprobs.content


def submitted(arbiter, content: str, **fields):
    """A job through the REST jobs API, run by the live workers to its settled state, as the API reads it."""
    client = client_with(arbiter.key)
    response = client.post(
        "/api/v1/jobs",
        {"task_type": "general", "messages": [{"role": "user", "content": content}], **fields},
        format="json",
    )
    assert response.status_code == 201, response.json()
    job = finished(Job.objects.get(pk=response.json()["id"]))
    return job, client.get(f"/api/v1/jobs/{job.pk}").json()


def test_the_jobs_api_forwards_tool_choice_as_the_chat_completion_does(arbiter, live_db):
    job, read = submitted(
        arbiter,
        PLAIN,
        tools=TOOLS,
        parameters={"tool_choice": {"type": "function", "function": {"name": "lookup_order"}}, "temperature": 0.2},
    )
    assert job.status == JobStatus.COMPLETED
    assert [call["name"] for call in read["result"]["output"]["tool_calls"]] == ["lookup_order"]
    assert job.request["parameters"] == {
        "tool_choice": {"type": "function", "function": {"name": "lookup_order"}},
        "temperature": 0.2,
    }
    _, refused = submitted(arbiter, MARKED, tools=TOOLS, parameters={"tool_choice": "none"})
    assert not refused["result"]["output"].get("tool_calls") and refused["result"]["output"]["content"]


def test_a_forced_held_call_through_the_jobs_api_is_held_and_not_readable(arbiter, live_db):
    job, read = submitted(
        arbiter,
        PLAIN,
        tools=TOOLS,
        parameters={"tool_choice": {"type": "function", "function": {"name": "issue_refund"}}},
    )
    assert job.status == JobStatus.AWAITING_APPROVAL and job.result["output"]["tool_calls"][0]["name"] == "issue_refund"
    assert read["result"] is None and read["result_withheld"] == "awaiting_approval"
    assert "issue_refund" not in json.dumps({key: value for key, value in read.items() if key != "request"})


def test_the_jobs_api_refuses_bad_parameters_as_the_chat_completion_does(arbiter, live_db):
    client = client_with(arbiter.key)
    before = Job.objects.filter(application=arbiter.setup.application).count()
    body = {"task_type": "general", "messages": [{"role": "user", "content": PLAIN}]}
    for parameters, field, message in [
        ({"tool_choice": "required"}, "parameters.tool_choice", "only allowed when tools are given"),
        ({"temperature": 7}, "parameters.temperature", "less than or equal to 2"),
        ({"temperatur": 0.2}, "parameters.temperatur", "unknown field"),
    ]:
        response = client.post("/api/v1/jobs", {**body, "parameters": parameters}, format="json")
        assert response.status_code == 400, response.json()
        errors = {error["field"]: error["message"] for error in response.json()["errors"]}
        assert message in errors[field], errors
    response = client.post(
        "/api/v1/jobs",
        {**body, "tools": [LOOKUP], "parameters": {"tool_choice": {"type": "function", "function": {"name": "x"}}}},
        format="json",
    )
    assert response.status_code == 400 and "not among the tools" in response.content.decode()
    assert Job.objects.filter(application=arbiter.setup.application).count() == before
