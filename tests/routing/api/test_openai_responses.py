"""The Responses API through the real `openai` SDK against a live Arbiter: each response is one governed
job, its route in the headers, its output only what the release gate lets out."""

from __future__ import annotations

import json

import openai
import pytest

from audit.models import LedgerEvent
from routing.models import Job, JobStatus, StoredResponse
from tests.support.compat import compat
from tests.support.factories import ApplicationFactory
from tests.support.live import deployment_without, live_arbiter
from tests.support.personas import key_for

pytestmark = pytest.mark.slow

REFUND_TOOL = {
    "type": "function",
    "name": "issue_refund",
    "description": "Refund an order.",
    "parameters": {"type": "object", "properties": {"amount": {"type": "number"}}},
    "strict": False,
}
CONFIDENT = "[task:classification] [confidence:nano=0.95,mini=0.9,flagship=0.9]"
REFUND = '[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {"amount": 50}]'


@pytest.fixture(scope="module")
def arbiter(django_db_setup, django_db_blocker, model_server):
    with django_db_blocker.unblock():
        yield from live_arbiter(model_server.base_url)


@pytest.fixture
def sdk(arbiter, live_db) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{arbiter.url}/v1", api_key=arbiter.key, max_retries=0, timeout=60)


def create(sdk: openai.OpenAI, *, task_type: str = "classification", **fields):
    return sdk.responses.with_raw_response.create(
        model="auto", extra_headers={"x-arbiter-task-type": task_type}, **fields
    )


def job_of(response) -> Job:
    assert response.id.startswith("resp_")
    return Job.objects.get(pk=response.id.removeprefix("resp_"))


def events_of(job: Job) -> list[str]:
    return list(LedgerEvent.objects.filter(subject_job=str(job.pk)).order_by("id").values_list("event_type", flat=True))


@pytest.mark.django_db
def test_responses_without_a_key_is_401_in_openai_form(client):
    # Also the django_db test that makes pytest-django create the test database for this module.
    response = client.post("/v1/responses", {"model": "auto", "input": "hi"}, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.django_db
def test_delete_needs_the_write_scope_and_other_methods_are_405_in_openai_form(client):
    application = ApplicationFactory()
    reader = {"HTTP_AUTHORIZATION": f"Bearer {key_for(application, 'jobs:read')}"}
    writer = {"HTTP_AUTHORIZATION": f"Bearer {key_for(application, 'jobs:read', 'jobs:write')}"}
    some_id = f"resp_{'ab' * 16}"
    refused = client.delete(f"/v1/responses/{some_id}", **reader)
    assert refused.status_code == 403 and "error" in refused.json()
    assert client.delete(f"/v1/responses/{some_id}", **writer).json()["error"]["code"] == "response_not_found"
    assert client.get(f"/v1/responses/{some_id}/input_items", **reader).status_code == 404
    for method, path in [
        ("put", some_id),
        ("post", some_id),
        ("post", f"{some_id}/input_items"),
        ("delete", f"{some_id}/input_items"),
    ]:
        response = getattr(client, method)(f"/v1/responses/{path}", **writer)
        assert response.status_code == 405, (method, path)
        assert "error" in response.json()


@compat("openai", "call", "`responses.create`")
@compat("openai", "route headers", "on `responses` too")
def test_a_string_input_is_one_governed_job_answered_as_a_response(sdk, arbiter):
    raw = create(sdk, input=f"{CONFIDENT} Billing or tech?")
    response = raw.parse()
    assert response.object == "response" and response.status == "completed"
    assert response.output_text
    assert [item.type for item in response.output] == ["message"]
    job = job_of(response)
    assert job.application == arbiter.setup.application and job.status == JobStatus.COMPLETED
    assert job.request["messages"] == [{"role": "user", "content": f"{CONFIDENT} Billing or tech?"}]
    assert raw.headers["x-arbiter-job-id"] == str(job.pk)
    assert raw.headers["x-arbiter-final-tier"] == "nano"
    assert raw.headers["x-arbiter-policy-version"] == f"{arbiter.setup.policy.name}@v1"
    decision = LedgerEvent.objects.get(pk=int(raw.headers["x-arbiter-decision-id"]))
    assert decision.event_type == "route.decided" and decision.subject_job == str(job.pk)
    assert events_of(job) == ["job.submitted", "route.decided", "model.called", "confidence.scored", "job.completed"]
    step = job.steps.get()
    assert response.usage.input_tokens == step.prompt_tokens
    assert response.usage.total_tokens == step.prompt_tokens + step.completion_tokens
    assert response.model == step.model


def test_instructions_are_the_first_message_and_metadata_steers_the_job(sdk):
    response = sdk.responses.create(
        model="auto",
        instructions="Answer with the queue's name only.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": f"{CONFIDENT} Card charged twice"}]}],
        metadata={"task_type": "classification", "labels": '{"team": "support"}', "ticket": "T-1"},
    )
    job = job_of(response)
    assert job.request["messages"] == [
        {"role": "system", "content": "Answer with the queue's name only."},
        {"role": "user", "content": f"{CONFIDENT} Card charged twice"},
    ]
    assert job.task_type == "classification" and job.labels == {"team": "support"}
    assert response.instructions == "Answer with the queue's name only."
    assert response.metadata == {"ticket": "T-1"}


@compat("openai", "tools", "Responses `function_call_output` round trip")
def test_a_function_tool_call_and_its_output_make_a_round_trip(sdk, arbiter):
    first_raw = create(sdk, task_type="general", input=f"{REFUND} refund please", tools=[REFUND_TOOL])
    first = first_raw.parse()
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "issue_refund"
    assert json.loads(calls[0].arguments) == {"amount": 50}
    first_job = job_of(first)
    assert first_job.request["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "issue_refund",
                "description": "Refund an order.",
                "parameters": REFUND_TOOL["parameters"],
                "strict": False,
            },
        }
    ]
    assert first.tools[0].name == "issue_refund"
    # The client runs the tool and sends the whole conversation back, as the Agents SDK does.
    second = sdk.responses.create(
        model="auto",
        extra_headers={"x-arbiter-task-type": "general"},
        tools=[REFUND_TOOL],
        input=[
            {"role": "user", "content": f"{REFUND} refund please"},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"refunded": 50}'},
        ],
    )
    assert [item.type for item in second.output] == ["message"]
    assert second.output_text
    messages = job_of(second).request["messages"]
    assert messages[1]["role"] == "assistant"
    assert messages[1]["tool_calls"][0]["id"] == calls[0].call_id
    assert messages[1]["tool_calls"][0]["function"]["name"] == "issue_refund"
    assert messages[2] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": '{"refunded": 50}'}
    assert job_of(second) != first_job


def test_previous_response_id_prepends_its_conversation_and_answer_not_its_instructions(sdk):
    first = sdk.responses.create(
        model="auto",
        instructions="Be terse.",
        input=f"{CONFIDENT} My order is late",
        extra_headers={"x-arbiter-task-type": "classification"},
    )
    second = sdk.responses.create(
        model="auto",
        previous_response_id=first.id,
        input=f"{CONFIDENT} And where is it now?",
        extra_headers={"x-arbiter-task-type": "classification"},
    )
    assert second.previous_response_id == first.id
    assert second.instructions is None
    assert job_of(second).request["messages"] == [
        {"role": "user", "content": f"{CONFIDENT} My order is late"},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": f"{CONFIDENT} And where is it now?"},
    ]
    assert StoredResponse.objects.get(job=job_of(second)).previous_id == job_of(first).pk


def test_a_stored_response_is_retrieved_and_an_unstored_one_is_not(sdk):
    made = sdk.responses.create(model="auto", input=f"{CONFIDENT} keep me", metadata={"task_type": "classification"})
    retrieved_raw = sdk.responses.with_raw_response.retrieve(made.id)
    retrieved = retrieved_raw.parse()
    assert retrieved.id == made.id and retrieved.status == "completed"
    assert retrieved.output_text == made.output_text
    assert retrieved.usage.total_tokens == made.usage.total_tokens
    assert retrieved_raw.headers["x-arbiter-job-id"] == str(job_of(made).pk)
    assert retrieved_raw.headers["x-arbiter-final-tier"] == "nano"

    unstored = sdk.responses.create(
        model="auto", input=f"{CONFIDENT} forget me", store=False, metadata={"task_type": "classification"}
    )
    assert unstored.store is False and unstored.output_text
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.responses.retrieve(unstored.id)
    assert raised.value.code == "response_not_found"
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.responses.create(model="auto", input="go on", previous_response_id=unstored.id)
    assert raised.value.param == "previous_response_id"


def test_another_applications_response_is_404_to_read_or_to_continue(sdk, arbiter):
    made = sdk.responses.create(model="auto", input=f"{CONFIDENT} mine", metadata={"task_type": "classification"})
    other = openai.OpenAI(
        base_url=f"{arbiter.url}/v1",
        api_key=key_for(ApplicationFactory(), "jobs:read", "jobs:write"),
        max_retries=0,
        timeout=60,
    )
    with pytest.raises(openai.NotFoundError) as raised:
        other.responses.retrieve(made.id)
    assert raised.value.code == "response_not_found"
    before = Job.objects.count()
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="auto", input="go on", previous_response_id=made.id)
    assert Job.objects.count() == before
    # A chat completion's job is not a response either.
    chat = sdk.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": f"{CONFIDENT} chat"}], metadata={"task_type": "general"}
    )
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(f"resp_{chat.id.removeprefix('chatcmpl-')}")


def test_a_held_job_is_the_same_409_and_its_response_shows_no_output_until_released(sdk, arbiter):
    with pytest.raises(openai.ConflictError) as raised:
        create(sdk, input="[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4] Unsure")
    assert raised.value.code == "approval_required"
    job = Job.objects.get(pk=raised.value.body["job_id"])
    assert job.status == JobStatus.AWAITING_APPROVAL and job.result  # there is an answer, withheld
    assert raised.value.response.headers["x-arbiter-job-id"] == str(job.pk)
    assert "x-arbiter-final-tier" not in raised.value.response.headers
    held = sdk.responses.retrieve(f"resp_{job.pk.hex}")
    assert held.status == "in_progress" and held.output == [] and held.usage is None
    assert held.model_extra["arbiter"]["result_withheld"] == "awaiting_approval"
    assert "approval.requested" in events_of(job)
    # Nor can a conversation continue from it: the answer would reach the model and come back.
    with pytest.raises(openai.ConflictError) as raised:
        sdk.responses.create(model="auto", input="go on", previous_response_id=held.id)
    assert raised.value.code == "previous_response_not_released"


def test_once_a_reviewer_approves_the_held_response_reads_back_with_its_output_and_continues(sdk, arbiter):
    from controlplane.roles import Role
    from review.services import approval_approve
    from tests.support.factories import UserFactory

    with pytest.raises(openai.ConflictError) as raised:
        create(sdk, input="[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4] Unsure, then approved")
    job = Job.objects.get(pk=raised.value.body["job_id"])
    assert sdk.responses.retrieve(f"resp_{job.pk.hex}").output == []
    approval_approve(job=job, user=UserFactory(roles=[Role.REVIEWER]), reason="fine")
    raw = sdk.responses.with_raw_response.retrieve(f"resp_{job.pk.hex}")
    released = raw.parse()
    assert released.status == "completed" and released.output_text
    assert raw.headers["x-arbiter-final-tier"] == "flagship"
    assert released.model_extra["arbiter"]["result_withheld"] is None
    continued = sdk.responses.create(
        model="auto", previous_response_id=released.id, input=f"{CONFIDENT} thanks", metadata={"task_type": "general"}
    )
    assert job_of(continued).request["messages"][1] == {"role": "assistant", "content": released.output_text}


def test_a_blocked_tool_call_is_a_403_and_its_response_failed_without_the_call(sdk, arbiter):
    with pytest.raises(openai.PermissionDeniedError) as raised:
        create(
            sdk,
            task_type="general",
            input="[task:general] [confidence:mini=0.9,flagship=0.9] [call:delete_everything {}] tidy up",
            tools=[REFUND_TOOL],
        )
    assert raised.value.code == "tool_call_blocked"
    assert "delete_everything" not in raised.value.response.text
    job_id = raised.value.body["job_id"]
    raw = sdk.responses.with_raw_response.retrieve(f"resp_{job_id.replace('-', '')}")
    blocked = raw.parse()
    assert blocked.status == "failed" and blocked.output == []
    assert blocked.error.code == "tool_call_blocked"
    assert "delete_everything" not in raw.http_response.text


def test_unsupported_shapes_are_400s_that_name_the_field(sdk, arbiter):
    before = Job.objects.filter(application=arbiter.setup.application).count()
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.responses.create(model="auto", input="hi", tools=[{"type": "web_search"}])
    assert raised.value.param == "tools"
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.responses.create(
            model="auto", input=[{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]
        )
    assert raised.value.param == "input"
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.responses.create(model="gpt-4.1", input="hi")
    assert raised.value.code == "model_not_found"
    assert Job.objects.filter(application=arbiter.setup.application).count() == before


@compat("openai", "structured output", "Responses `text.format` json_schema")
def test_text_format_json_schema_becomes_the_jobs_response_format(sdk):
    schema = {"type": "object", "properties": {"queue": {"type": "string"}}, "required": ["queue"]}
    response = sdk.responses.create(
        model="auto",
        input=f"{CONFIDENT} Which queue?",
        text={"format": {"type": "json_schema", "name": "route", "schema": schema, "strict": True}},
        metadata={"task_type": "classification"},
    )
    job = job_of(response)
    assert job.request["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "route", "schema": schema, "strict": True},
    }
    assert response.text.format.type == "json_schema" and response.text.format.name == "route"
    assert "queue" in json.loads(response.output_text)


@compat("agents", "call", "`Runner.run_sync`")
@compat("agents", "tools", "`function_tool`")
def test_the_openai_agents_sdk_runs_a_function_tool_on_its_default_responses_api(arbiter, live_db):
    from agents import Agent, RunConfig, Runner, function_tool
    from agents.models.openai_provider import OpenAIProvider

    refunds: list[int] = []

    @function_tool
    def issue_refund(amount: int) -> str:
        """Refund an order."""
        refunds.append(amount)
        return f"refunded {amount}"

    client = openai.AsyncOpenAI(base_url=f"{arbiter.url}/v1", api_key=arbiter.key, max_retries=0, timeout=60)
    agent = Agent(name="support", instructions="Help with refunds.", model="auto", tools=[issue_refund])
    before = set(Job.objects.filter(application=arbiter.setup.application).values_list("pk", flat=True))
    result = Runner.run_sync(
        agent,
        f"{REFUND} refund order 7",
        # The provider is the SDK's own (Responses API by default); only its client points at Arbiter, and
        # tracing, which would upload to OpenAI, is off.
        run_config=RunConfig(model_provider=OpenAIProvider(openai_client=client), tracing_disabled=True),
    )
    assert refunds == [50]
    assert result.final_output
    jobs = list(Job.objects.filter(application=arbiter.setup.application).exclude(pk__in=before).order_by("created_at"))
    assert len(jobs) == 2  # one governed job per model call: the tool call, then the answer
    assert all(job.status == JobStatus.COMPLETED for job in jobs)
    assert all(StoredResponse.objects.filter(job=job).exists() for job in jobs)
    assert jobs[0].request["messages"][0] == {"role": "system", "content": "Help with refunds."}
    assert jobs[1].request["messages"][-1]["role"] == "tool"
    assert jobs[1].request["messages"][-1]["content"] == "refunded 50"
    assert [events_of(job)[0] for job in jobs] == ["job.submitted", "job.submitted"]
    assert all("route.decided" in events_of(job) and events_of(job)[-1] == "job.completed" for job in jobs)
    assert [response.response_id for response in result.raw_responses] == [f"resp_{job.pk.hex}" for job in jobs]


@compat("openai", "stream", "`responses.create(stream=True)`")
def test_a_streamed_response_is_the_released_answer_as_the_documented_events(sdk, arbiter):
    with sdk.responses.with_streaming_response.create(
        model="auto",
        input=f"{REFUND} refund please",
        tools=[REFUND_TOOL],
        stream=True,
        extra_headers={"x-arbiter-task-type": "general"},
    ) as raw:
        assert raw.headers["content-type"].startswith("text/event-stream")
        assert raw.headers["x-arbiter-final-tier"]
        events = list(raw.parse())
    types = [event.type for event in events]
    # Consecutive deltas counted once: the text and the arguments come in several pieces, as in a chat stream.
    assert [kind for index, kind in enumerate(types) if index == 0 or kind != types[index - 1]] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    done = events[-1].response
    job = job_of(done)
    assert raw.headers["x-arbiter-job-id"] == str(job.pk)
    text = [event.delta for event in events if event.type == "response.output_text.delta"]
    arguments = [event.delta for event in events if event.type == "response.function_call_arguments.delta"]
    assert len(text) > 1 and len(arguments) > 1
    assert "".join(text) == done.output[0].content[0].text
    assert json.loads("".join(arguments)) == {"amount": 50}
    # The same governed answer as GET reads back: one job, its ledger complete.
    assert sdk.responses.retrieve(done.id).output == done.output
    assert events_of(job)[0] == "job.submitted" and events_of(job)[-1] == "job.completed"


def test_the_sdks_stream_helper_reassembles_the_pieces_into_the_released_answer(sdk):
    with sdk.responses.stream(
        model="auto", input=f"{CONFIDENT} A longer question, in several words", metadata={"task_type": "classification"}
    ) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) > 1
    assert "".join(deltas) == final.output_text == sdk.responses.retrieve(final.id).output_text


def test_a_held_streamed_response_is_the_json_409_before_any_event_and_one_job(sdk, arbiter):
    before = Job.objects.filter(application=arbiter.setup.application).count()
    with pytest.raises(openai.ConflictError) as raised:
        sdk.responses.create(
            model="auto",
            input="[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4] Unsure, streamed",
            stream=True,
            metadata={"task_type": "classification"},
        )
    assert raised.value.code == "approval_required"
    assert raised.value.response.headers["content-type"].startswith("application/json")
    assert Job.objects.filter(application=arbiter.setup.application).count() == before + 1


@compat("agents", "stream", "`Runner.run_streamed`")
@compat("agents", "tools", "`function_tool`, streamed")
def test_the_agents_sdk_streams_a_run_with_a_function_tool(arbiter, live_db):
    import asyncio

    from agents import Agent, RunConfig, Runner, function_tool
    from agents.models.openai_provider import OpenAIProvider

    @function_tool
    def issue_refund(amount: int) -> str:
        """Refund an order."""
        return f"refunded {amount}"

    client = openai.AsyncOpenAI(base_url=f"{arbiter.url}/v1", api_key=arbiter.key, max_retries=0, timeout=60)
    agent = Agent(name="support", instructions="Help with refunds.", model="auto", tools=[issue_refund])

    async def run():
        result = Runner.run_streamed(
            agent,
            f"{REFUND} refund order 8",
            run_config=RunConfig(model_provider=OpenAIProvider(openai_client=client), tracing_disabled=True),
        )
        kinds = [event.type async for event in result.stream_events()]
        return result, kinds

    result, kinds = asyncio.run(run())
    assert result.final_output
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    outputs = [item for item in result.new_items if item.type == "tool_call_output_item"]
    assert [item.output for item in outputs] == ["refunded 50"]
    assert len(result.raw_responses) == 2
    for response in result.raw_responses:
        job = Job.objects.get(pk=response.response_id.removeprefix("resp_"))
        assert job.status == JobStatus.COMPLETED and events_of(job)[-1] == "job.completed"



@compat("agents", "structured output", "`output_type=` a pydantic model (`text.format` json_schema)")
def test_the_agents_sdk_gives_an_output_type_from_one_json_schema_job(arbiter, live_db):
    from agents import Agent, RunConfig, Runner
    from agents.models.openai_provider import OpenAIProvider
    from pydantic import BaseModel

    class Route(BaseModel):
        queue: str
        urgent: bool

    client = openai.AsyncOpenAI(base_url=f"{arbiter.url}/v1", api_key=arbiter.key, max_retries=0, timeout=60)
    agent = Agent(name="triage", instructions="Route the ticket.", model="auto", output_type=Route)
    result = Runner.run_sync(
        agent,
        f"{CONFIDENT} card charged twice",
        run_config=RunConfig(model_provider=OpenAIProvider(openai_client=client), tracing_disabled=True),
    )
    assert isinstance(result.final_output, Route)
    [response] = result.raw_responses
    job = Job.objects.get(pk=response.response_id.removeprefix("resp_"))
    assert job.status == JobStatus.COMPLETED and events_of(job)[-1] == "job.completed"
    assert job.request["response_format"]["type"] == "json_schema"
    assert job.request["response_format"]["json_schema"]["schema"]["required"] == ["queue", "urgent"]

def test_erasing_a_response_erases_the_responses_that_continued_it(sdk, arbiter):
    from audit.ledger import Actor
    from routing.services.erasure import erasure_apply, erasure_select

    ask = {"model": "auto", "metadata": {"task_type": "classification"}}
    first = sdk.responses.create(**ask, input=f"{CONFIDENT} I am ada.lovelace@example.com")
    second = sdk.responses.create(**ask, previous_response_id=first.id, input=f"{CONFIDENT} and my order?")
    assert "ada.lovelace@example.com" in json.dumps(job_of(second).request)  # the conversation, copied
    selection = erasure_select(job=job_of(first))
    assert set(selection.job_ids) == {str(job_of(first).pk), str(job_of(second).pk)}
    erasure_apply(selection=selection, actor=Actor.system("test"), reason="data_subject_request")
    for made in (first, second):
        assert "ada.lovelace" not in json.dumps(job_of(made).request)
        # A clear 410 naming erasure, not a half-empty response, whichever way the application reads it.
        for read in (sdk.responses.retrieve, sdk.responses.input_items.list):
            with pytest.raises(openai.APIStatusError) as raised:
                read(made.id)
            assert raised.value.status_code == 410 and raised.value.code == "response_erased"
            assert "was erased" in raised.value.message and "ada" not in raised.value.response.text
    with pytest.raises(openai.APIStatusError) as raised:
        sdk.responses.create(**ask, previous_response_id=first.id, input="go on")
    assert raised.value.status_code == 410 and raised.value.code == "previous_response_erased"
    assert raised.value.param == "previous_response_id"


def test_an_idempotent_retry_is_the_same_response_and_one_job(sdk, arbiter):
    fields = {"model": "auto", "input": f"{CONFIDENT} once only", "metadata": {"task_type": "classification"}}
    key = {"Idempotency-Key": f"resp-{arbiter.queue}"}
    before = Job.objects.filter(application=arbiter.setup.application).count()
    first = sdk.responses.create(**fields, extra_headers=key)
    again = sdk.responses.create(**fields, extra_headers=key)
    assert again.id == first.id and again.output_text == first.output_text
    assert Job.objects.filter(application=arbiter.setup.application).count() == before + 1
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        sdk.responses.create(**{**fields, "input": "another body"}, extra_headers=key)
    assert raised.value.code == "idempotency_conflict"


PLAIN = "[task:general] [confidence:mini=0.9,flagship=0.9] Where is my parcel?"


def function_calls(response) -> list[str]:
    return [item.name for item in response.output if item.type == "function_call"]


def test_tool_choice_is_forwarded_in_the_chat_shape_and_does_what_openai_documents(sdk):
    lookup = {**REFUND_TOOL, "name": "lookup_order", "description": "Find an order."}
    tools = [lookup, REFUND_TOOL]
    # `none`: the model would call the tool (the marker says so) and does not.
    refused = create(sdk, task_type="general", input=f"{REFUND} but do not", tools=tools, tool_choice="none").parse()
    assert [item.type for item in refused.output] == ["message"] and refused.output_text
    assert job_of(refused).request["parameters"]["tool_choice"] == "none"
    assert refused.tool_choice == "none"
    # `auto` leaves it to the model: nothing in the prompt asks for a call.
    assert function_calls(create(sdk, task_type="general", input=PLAIN, tools=tools).parse()) == []
    # `required`: a call although nothing asks for one.
    required = create(sdk, task_type="general", input=PLAIN, tools=[lookup], tool_choice="required").parse()
    assert function_calls(required) == ["lookup_order"]
    # A named function, in the Responses shape: that function, sent in the chat shape, read back as given.
    forced = create(
        sdk,
        task_type="general",
        input=PLAIN,
        tools=tools,
        tool_choice={"type": "function", "name": "lookup_order"},
        parallel_tool_calls=False,
    ).parse()
    assert function_calls(forced) == ["lookup_order"]
    assert job_of(forced).request["parameters"] == {
        "tool_choice": {"type": "function", "function": {"name": "lookup_order"}},
        "parallel_tool_calls": False,
    }
    assert forced.tool_choice.type == "function" and forced.tool_choice.name == "lookup_order"
    assert forced.parallel_tool_calls is False


def test_a_named_tool_choice_forcing_a_held_call_is_held_like_any_other(sdk, arbiter):
    # The policy holds refunds over 100: a strict minimum of 500 makes the forced call one of them.
    refund = {
        **REFUND_TOOL,
        "parameters": {
            "type": "object",
            "properties": {"amount": {"type": "integer", "minimum": 500}},
            "required": ["amount"],
        },
    }
    with pytest.raises(openai.ConflictError) as raised:
        create(
            sdk,
            task_type="general",
            input=PLAIN,
            tools=[refund],
            tool_choice={"type": "function", "name": "issue_refund"},
        )
    assert raised.value.code == "approval_required"
    assert "issue_refund" not in raised.value.response.text
    job = Job.objects.get(pk=raised.value.body["job_id"])
    assert job.status == JobStatus.AWAITING_APPROVAL and job.result["output"]["tool_calls"][0]["name"] == "issue_refund"


def test_a_tool_choice_the_tools_do_not_offer_is_a_400_as_on_chat_completions(sdk, arbiter):
    before = Job.objects.filter(application=arbiter.setup.application).count()
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.responses.create(
            model="auto", input=PLAIN, tools=[REFUND_TOOL], tool_choice={"type": "function", "name": "lookup_order"}
        )
    assert raised.value.param == "tool_choice" and "not among the tools" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.responses.create(model="auto", input=PLAIN, tool_choice="required")
    assert "only allowed when tools are given" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.responses.create(model="auto", input=PLAIN, reasoning={"effort": "enormous"})
    assert raised.value.param == "reasoning.effort"
    assert Job.objects.filter(application=arbiter.setup.application).count() == before


def test_the_model_parameters_are_forwarded_under_their_chat_names(sdk):
    raw = create(
        sdk,
        task_type="general",
        input=PLAIN,
        temperature=0.2,
        top_p=0.9,
        reasoning={"effort": "low"},
        service_tier="auto",
        prompt_cache_key="tenant-7",
        safety_identifier="user-hash-1",
        user="someone",
        text={"verbosity": "low"},
        metadata={"ticket": "T-2"},
    )
    response = raw.parse()
    assert response.output_text
    assert "x-arbiter-ignored-params" not in raw.headers  # the deployment takes every one of them
    assert job_of(response).request["parameters"] == {
        "temperature": 0.2,
        "top_p": 0.9,
        "reasoning_effort": "low",
        "verbosity": "low",
        "service_tier": "auto",
        "prompt_cache_key": "tenant-7",
        "safety_identifier": "user-hash-1",
        "user": "someone",
    }
    assert (response.temperature, response.top_p, response.reasoning.effort) == (0.2, 0.9, "low")
    assert response.text.verbosity == "low"
    assert response.metadata == {"ticket": "T-2"} and job_of(response).metadata == {"ticket": "T-2"}


def test_max_output_tokens_reaches_the_model_and_an_answer_cut_short_is_incomplete(sdk):
    response = create(sdk, task_type="general", input=PLAIN, max_output_tokens=2).parse()
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.max_output_tokens == 2
    assert response.usage.output_tokens <= 2
    assert job_of(response).request["parameters"] == {"max_completion_tokens": 2}


def test_logprobs_come_back_when_include_asks_for_them(sdk):
    asked = create(sdk, task_type="general", input=PLAIN, include=["message.output_text.logprobs"], top_logprobs=2)
    text = asked.parse().output[0].content[0]
    assert "".join(token.token for token in text.logprobs) == text.text
    assert all(len(token.top_logprobs) == 2 for token in text.logprobs)
    # The policy asks for logprobs itself (to score confidence); a caller who did not ask gets none.
    assert create(sdk, task_type="general", input=PLAIN).parse().output[0].content[0].logprobs == []


def test_what_the_deployment_does_not_take_is_named_by_its_responses_name(sdk, arbiter):
    with deployment_without(arbiter.setup.deployments["mini"], "temperature", "max_completion_tokens"):
        raw = create(sdk, task_type="general", input=PLAIN, temperature=0.3, max_output_tokens=500, max_tool_calls=3)
    assert raw.parse().output_text
    assert raw.headers["x-arbiter-final-tier"] == "mini"
    assert raw.headers["x-arbiter-ignored-params"] == "max_output_tokens, max_tool_calls, temperature"
    called = LedgerEvent.objects.get(subject_job=raw.headers["x-arbiter-job-id"], event_type="model.called")
    assert called.body["parameters_dropped"] == ["max_completion_tokens", "temperature"]


def test_input_items_are_the_calls_own_input_newest_first_with_a_cursor(sdk, arbiter):
    first = sdk.responses.create(
        model="auto",
        instructions="Be terse.",
        input=f"{REFUND} refund please",
        tools=[REFUND_TOOL],
        metadata={"task_type": "general"},
    )
    call = next(item for item in first.output if item.type == "function_call")
    second = sdk.responses.create(
        model="auto",
        previous_response_id=first.id,
        tools=[REFUND_TOOL],
        input=[
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"refunded": 50}'},
            {"role": "user", "content": [{"type": "input_text", "text": f"{CONFIDENT} and a receipt?"}]},
        ],
        metadata={"task_type": "general"},
    )
    # The first call's input: one message, not its instructions.
    (only,) = sdk.responses.input_items.list(first.id).data
    assert (only.type, only.role, only.content[0].text) == ("message", "user", f"{REFUND} refund please")
    # The continuation's own input, newest first: not the conversation it continued (that is the first's).
    page = sdk.responses.input_items.list(second.id)
    assert [item.type for item in page.data] == ["message", "function_call_output"]
    assert page.data[0].content[0].text == f"{CONFIDENT} and a receipt?"
    assert (page.data[1].call_id, page.data[1].output) == (call.call_id, '{"refunded": 50}')
    assert page.has_more is False
    assert [item.id for item in sdk.responses.input_items.list(second.id, order="asc").data] == [
        item.id for item in reversed(page.data)
    ]
    # The SDK's auto-paging walks the cursor one item at a time and finds the same items.
    walked = sdk.responses.input_items.list(second.id, limit=1)
    assert walked.has_more is True and len(walked.data) == 1
    assert [item.id for item in walked] == [item.id for item in page.data]
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.responses.input_items.list(second.id, after="msg_unknown")
    assert raised.value.param == "after"
    with pytest.raises(openai.BadRequestError):
        sdk.responses.input_items.list(second.id, limit=101)


def test_a_held_responses_input_items_are_its_input_and_nothing_of_the_held_answer(sdk, arbiter):
    refund = {
        **REFUND_TOOL,
        "parameters": {
            "type": "object",
            "properties": {"amount": {"type": "integer", "minimum": 500}},
            "required": ["amount"],
        },
    }
    with pytest.raises(openai.ConflictError) as raised:
        create(sdk, task_type="general", input=PLAIN, tools=[refund], tool_choice="required")
    job = Job.objects.get(pk=raised.value.body["job_id"])
    assert job.status == JobStatus.AWAITING_APPROVAL
    raw = sdk.responses.input_items.with_raw_response.list(f"resp_{job.pk.hex}")
    assert [item.content[0].text for item in raw.parse().data] == [PLAIN]
    assert "issue_refund" not in raw.http_response.text and "amount" not in raw.http_response.text


def test_another_applications_deleted_or_unstored_responses_input_items_are_404(sdk, arbiter):
    made = sdk.responses.create(model="auto", input=f"{CONFIDENT} mine", metadata={"task_type": "classification"})
    other = openai.OpenAI(
        base_url=f"{arbiter.url}/v1",
        api_key=key_for(ApplicationFactory(), "jobs:read", "jobs:write"),
        max_retries=0,
        timeout=60,
    )
    with pytest.raises(openai.NotFoundError) as raised:
        other.responses.input_items.list(made.id)
    assert raised.value.code == "response_not_found"
    unstored = sdk.responses.create(
        model="auto", input=f"{CONFIDENT} not kept", store=False, metadata={"task_type": "classification"}
    )
    with pytest.raises(openai.NotFoundError):
        sdk.responses.input_items.list(unstored.id)
    sdk.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.input_items.list(made.id)


def test_deleting_a_response_removes_the_handle_and_keeps_the_record(sdk, arbiter):
    made = sdk.responses.create(model="auto", input=f"{CONFIDENT} delete me", metadata={"task_type": "classification"})
    job = job_of(made)
    other = openai.OpenAI(
        base_url=f"{arbiter.url}/v1",
        api_key=key_for(ApplicationFactory(), "jobs:read", "jobs:write"),
        max_retries=0,
        timeout=60,
    )
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(made.id)
    assert "response.deleted" not in events_of(job)
    raw = sdk.responses.with_raw_response.delete(made.id)
    assert raw.http_response.json() == {"id": made.id, "object": "response", "deleted": True}
    # The handle is gone: not read back, not listed, not continued, not deleted twice.
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.responses.retrieve(made.id)
    assert raised.value.code == "response_not_found"
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.responses.create(model="auto", input="go on", previous_response_id=made.id)
    assert raised.value.param == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        sdk.responses.delete(made.id)
    # The record stays: the job, its answer, its ledger, with one event for the delete.
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.result["output"]["content"] == made.output_text
    assert events_of(job)[-2:] == ["job.completed", "response.deleted"]
    deleted = LedgerEvent.objects.get(subject_job=str(job.pk), event_type="response.deleted")
    assert deleted.actor_kind == "application" and deleted.body == {"response": made.id}
    assert StoredResponse.objects.get(job=job).deleted_at is not None
    # The same request again, within the implicit-idempotency window, is a new call, not the deleted one.
    again = sdk.responses.create(model="auto", input=f"{CONFIDENT} delete me", metadata={"task_type": "classification"})
    assert again.id != made.id and job_of(again).pk != job.pk
    assert sdk.responses.retrieve(again.id).output_text == again.output_text


def test_deleting_a_held_response_says_nothing_of_its_answer_and_the_job_stays_held(sdk, arbiter):
    from controlplane.roles import Role
    from review.services import approval_approve
    from tests.support.factories import UserFactory

    with pytest.raises(openai.ConflictError) as raised:
        create(sdk, input="[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4] Unsure, deleted")
    job = Job.objects.get(pk=raised.value.body["job_id"])
    held_id = f"resp_{job.pk.hex}"
    raw = sdk.responses.with_raw_response.delete(held_id)
    assert raw.http_response.json() == {"id": held_id, "object": "response", "deleted": True}
    assert not {"x-arbiter-final-tier", "x-arbiter-decision-id"} & set(raw.headers)
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL  # the reviewers still decide it
    # Released later, it is still not readable through the deleted handle (the jobs API has it).
    approval_approve(job=job, user=UserFactory(roles=[Role.REVIEWER]), reason="fine")
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(held_id)
