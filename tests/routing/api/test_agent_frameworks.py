"""Real third-party clients pointed at a live Arbiter: LangChain's `ChatOpenAI` (langchain-openai 1.8.1),
pydantic-ai 2.78.0, litellm 1.110.2 and instructor 1.17.0, over openai 3.63.0, the releases issue #13 was measured
with. Each call is exactly one governed job with its ledger events, its route in the headers where the client shows
them (instructor does not: an httpx response hook reads them), and a held call under the client's default retry
settings is one held job and one error, never the answer.

instructor 1.17.0 declares `jiter<0.15` while openai 3.63.0 needs `jiter>=0.16`; it is installed the way its users
run it beside a current openai, with --no-deps (requirements-nodeps.lock), and its partial streaming runs on jiter
0.19 here. The OpenAI Agents SDK (openai-agents 0.24.0) is tested in test_openai_responses.py."""

from __future__ import annotations

import json
import uuid

import instructor
import litellm
import openai
import pytest
from instructor.core.exceptions import InstructorRetryException
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel
from pydantic_ai import Agent, NativeOutput
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from audit.models import LedgerEvent
from routing.models import ApprovalRequest, Job, JobStatus
from tests.support.compat import compat
from tests.support.live import live_arbiter

pytestmark = pytest.mark.slow

CONFIDENT = "[task:general] [confidence:mini=0.9,flagship=0.9]"
UNSURE = "[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4]"
HEADERS = {"x-arbiter-task-type": "general"}


class Ticket(BaseModel):
    label: str
    confidence: float


class Answer(BaseModel):
    """The JSON object the model server answers in JSON mode (`response_format: json_object`), where the
    fields are asked for in the prompt rather than by a schema."""

    answer: str
    confidence: float


@tool
def lookup_order(order: str) -> str:
    """Look an order up by its id."""
    return order


@pytest.fixture(scope="module")
def arbiter(django_db_setup, django_db_blocker, model_server):
    with django_db_blocker.unblock():
        yield from live_arbiter(model_server.base_url)


class Sent:
    """Counts the HTTP requests a client sends (its retries included)."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request: object) -> None:
        self.requests += 1


class Heard:
    """The headers of the last HTTP response a client received (for clients that do not hand them back)."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}

    def __call__(self, response) -> None:
        self.headers = dict(response.headers)


@pytest.fixture
def langchain(arbiter, live_db) -> ChatOpenAI:
    return ChatOpenAI(
        model="auto",
        base_url=f"{arbiter.url}/v1",
        api_key=arbiter.key,
        default_headers=HEADERS,
        include_response_headers=True,
        max_retries=0,
        timeout=60,
    )


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex}"


class NewJobs:
    """The jobs of the application made since it was opened (the tests of a module run one at a time)."""

    def __init__(self, arbiter) -> None:
        self.application = arbiter.setup.application
        self.before = set(Job.objects.filter(application=self.application).values_list("pk", flat=True))

    def all(self) -> list[Job]:
        return list(Job.objects.filter(application=self.application).exclude(pk__in=self.before))

    def one(self) -> Job:
        jobs = self.all()
        assert len(jobs) == 1, f"expected exactly one job, got {len(jobs)}"
        return jobs[0]


def events_of(job: Job) -> list[str]:
    return list(LedgerEvent.objects.filter(subject_job=str(job.pk)).order_by("id").values_list("event_type", flat=True))


def assert_completed_and_routed(job: Job, headers: dict[str, str] | None, arbiter) -> None:
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert events_of(job) == ["job.submitted", "route.decided", "model.called", "confidence.scored", "job.completed"]
    if headers is not None:
        assert headers["x-arbiter-job-id"] == str(job.pk)
        assert headers["x-arbiter-final-tier"] == job.final_tier
        assert headers["x-arbiter-policy-version"] == f"{arbiter.setup.policy.name}@v1"
        decision = LedgerEvent.objects.get(pk=int(headers["x-arbiter-decision-id"]))
        assert decision.event_type == "route.decided" and decision.subject_job == str(job.pk)


def assert_held(job: Job) -> None:
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert ApprovalRequest.objects.filter(job=job).count() == 1
    events = events_of(job)
    assert events[:2] == ["job.submitted", "route.decided"] and events[-1] == "approval.requested"
    assert "job.completed" not in events


@pytest.mark.django_db
def test_the_database_is_set_up():
    pass  # the django_db test that makes pytest-django create the test database for this module


# --- LangChain ChatOpenAI -------------------------------------------------------------------------------


@compat("langchain", "call", "`invoke`")
@compat("langchain", "route headers", "`include_response_headers=True`")
def test_langchain_invoke_is_one_governed_job_with_its_route_in_the_headers(langchain, arbiter):
    jobs = NewJobs(arbiter)
    message = langchain.invoke(unique(f"{CONFIDENT} Where is my parcel?"))
    assert message.content
    assert_completed_and_routed(jobs.one(), message.response_metadata["headers"], arbiter)


@compat("langchain", "stream", "`stream`")
def test_langchain_stream_yields_the_answer_in_chunks_of_one_job(langchain, arbiter):
    jobs = NewJobs(arbiter)
    chunks = list(langchain.stream(unique(f"{CONFIDENT} Where is my parcel?")))
    assert len(chunks) > 1
    text = "".join(chunk.content for chunk in chunks)
    job = jobs.one()
    headers = next(chunk.response_metadata["headers"] for chunk in chunks if "headers" in chunk.response_metadata)
    assert_completed_and_routed(job, headers, arbiter)
    assert text == job.result["output"]["content"]


@compat("langchain", "stream", "`stream_usage=True`")
def test_langchain_stream_usage_is_the_token_count_of_the_job(langchain, arbiter):
    # LangChain asks for usage in a stream only of OpenAI itself unless told (`stream_usage`).
    jobs = NewJobs(arbiter)
    chunks = list(langchain.stream(unique(f"{CONFIDENT} Where is my parcel?"), stream_usage=True))
    usage = [chunk.usage_metadata for chunk in chunks if chunk.usage_metadata]
    steps = list(jobs.one().steps.all())
    assert [(each["input_tokens"], each["output_tokens"]) for each in usage] == [
        (sum(step.prompt_tokens for step in steps), sum(step.completion_tokens for step in steps))
    ]


@compat("langchain", "tools", "`bind_tools`")
def test_langchain_bind_tools_gets_the_tool_call(langchain, arbiter):
    jobs = NewJobs(arbiter)
    message = langchain.bind_tools([lookup_order]).invoke(
        unique(f'{CONFIDENT} [call:lookup_order {{"order": "A-1"}}] Where is my parcel?')
    )
    assert [(call["name"], call["args"]) for call in message.tool_calls] == [("lookup_order", {"order": "A-1"})]
    assert_completed_and_routed(jobs.one(), message.response_metadata["headers"], arbiter)


@pytest.mark.parametrize(
    ("method", "schema", "asks_for"),
    [
        ("function_calling", Ticket, {"tool_choice": {"type": "function", "function": {"name": "Ticket"}}}),
        ("json_schema", Ticket, {"response_format": "json_schema"}),
        ("json_mode", Answer, {"response_format": "json_object"}),
    ],
)
@compat("langchain", "structured output", "`with_structured_output`: `function_calling`, `json_schema`, `json_mode`")
def test_langchain_with_structured_output_gives_a_pydantic_object(langchain, arbiter, method, schema, asks_for):
    jobs = NewJobs(arbiter)
    structured = langchain.with_structured_output(schema, method=method, include_raw=True)
    result = structured.invoke(unique(f"{CONFIDENT} Classify: card charged twice. Answer in JSON."))
    assert result["parsing_error"] is None
    assert isinstance(result["parsed"], schema)
    job = jobs.one()
    assert_completed_and_routed(job, result["raw"].response_metadata["headers"], arbiter)
    if "tool_choice" in asks_for:  # the forced call LangChain relies on, forwarded and answered
        assert job.request["parameters"]["tool_choice"] == asks_for["tool_choice"]
        assert job.result["output"]["tool_calls"][0]["name"] == "Ticket"
    else:
        assert job.request["response_format"]["type"] == asks_for["response_format"]


@compat("langchain", "call", "`use_responses_api=True`")
@compat("langchain", "route headers", "on the Responses API too")
def test_langchain_on_the_responses_api_is_one_governed_job_with_its_route_in_the_headers(langchain, arbiter):
    responses = langchain.model_copy(update={"use_responses_api": True})
    jobs = NewJobs(arbiter)
    message = responses.invoke(unique(f"{CONFIDENT} Where is my parcel?"))
    job = jobs.one()
    assert message.response_metadata["id"] == f"resp_{job.pk.hex}"
    assert_completed_and_routed(job, message.response_metadata["headers"], arbiter)
    assert message.text == job.result["output"]["content"]


@compat("langchain", "stream", "`use_responses_api=True`")
def test_langchain_stream_on_the_responses_api_yields_the_answer_of_one_job(langchain, arbiter):
    jobs = NewJobs(arbiter)
    responses = langchain.model_copy(update={"use_responses_api": True, "include_response_headers": False})
    chunks = list(responses.stream(unique(f"{CONFIDENT} Where is my parcel?")))  # (LangChain shows no headers here)
    job = jobs.one()
    assert_completed_and_routed(job, None, arbiter)
    assert "".join(chunk.text for chunk in chunks) == job.result["output"]["content"]


@compat("langchain", "held call", "`openai.ConflictError`, one request")
def test_langchain_held_call_on_default_retries_is_one_held_job_and_one_error(arbiter, live_db):
    sent = Sent()
    client = ChatOpenAI(
        model="auto",
        base_url=f"{arbiter.url}/v1",
        api_key=arbiter.key,
        default_headers={"x-arbiter-task-type": "classification"},
        http_client=openai.DefaultHttpxClient(event_hooks={"request": [sent]}),
    )  # max_retries left at its default
    jobs = NewJobs(arbiter)
    with pytest.raises(openai.ConflictError) as raised:
        client.invoke(unique(f"{UNSURE} unsure"))
    assert raised.value.code == "approval_required"
    assert sent.requests == 1
    job = jobs.one()
    assert_held(job)
    assert_held(job)


@compat("langchain", "held call", "`stream`: before any chunk")
def test_langchain_stream_of_a_held_call_raises_before_any_chunk(langchain, arbiter):
    jobs = NewJobs(arbiter)
    unsure = langchain.model_copy(update={"default_headers": {"x-arbiter-task-type": "classification"}})
    chunks = []
    with pytest.raises(openai.ConflictError) as raised:
        for chunk in unsure.stream(unique(f"{UNSURE} unsure")):
            chunks.append(chunk)
    assert raised.value.code == "approval_required"
    assert chunks == []  # not a byte of the held answer
    assert_held(jobs.one())


# --- pydantic-ai ----------------------------------------------------------------------------------------


def pydantic_ai_agent(arbiter, *, task_type: str = "general", sent: Sent | None = None, output_type=Ticket) -> Agent:
    hooks = {"request": [_async_hook(sent)]} if sent else {}
    client = openai.AsyncOpenAI(
        base_url=f"{arbiter.url}/v1",
        api_key=arbiter.key,
        default_headers={"x-arbiter-task-type": task_type},
        http_client=openai.DefaultAsyncHttpxClient(event_hooks=hooks),
    )  # max_retries left at the SDK's default, as pydantic-ai leaves it
    return Agent(OpenAIChatModel("auto", provider=OpenAIProvider(openai_client=client)), output_type=output_type)


def _async_hook(sent: Sent):
    async def hook(request: object) -> None:
        sent(request)

    return hook


@compat("pydantic-ai", "call", "`run_sync`")
@compat("pydantic-ai", "structured output", "default (tool output)")
def test_pydantic_ai_default_structured_output_is_one_governed_job(arbiter, live_db):
    jobs = NewJobs(arbiter)
    result = pydantic_ai_agent(arbiter).run_sync(unique(f"{CONFIDENT} Classify: card charged twice"))
    assert isinstance(result.output, Ticket)
    job = jobs.one()
    assert_completed_and_routed(job, None, arbiter)  # pydantic-ai does not show response headers
    assert job.result["output"]["tool_calls"][0]["name"] == "final_result"  # its default: a tool output


@compat("pydantic-ai", "structured output", "`NativeOutput`")
def test_pydantic_ai_native_output_is_a_json_schema_answer_of_one_job(arbiter, live_db):
    jobs = NewJobs(arbiter)
    agent = pydantic_ai_agent(arbiter, output_type=NativeOutput(Ticket))
    result = agent.run_sync(unique(f"{CONFIDENT} Classify: card charged twice"))
    assert isinstance(result.output, Ticket)
    job = jobs.one()
    assert_completed_and_routed(job, None, arbiter)
    assert job.request["response_format"]["type"] == "json_schema"


@compat("pydantic-ai", "stream", "`run_stream_sync`")
def test_pydantic_ai_streamed_structured_output_is_one_governed_job(arbiter, live_db):
    jobs = NewJobs(arbiter)
    streamed = pydantic_ai_agent(arbiter).run_stream_sync(unique(f"{CONFIDENT} Classify: card charged twice"))
    assert isinstance(streamed.get_output(), Ticket)
    assert_completed_and_routed(jobs.one(), None, arbiter)


@compat("pydantic-ai", "held call", "`ModelHTTPError` 409, one request")
def test_pydantic_ai_held_call_on_default_retries_is_one_held_job_and_one_error(arbiter, live_db):
    sent = Sent()
    jobs = NewJobs(arbiter)
    with pytest.raises(ModelHTTPError) as raised:
        pydantic_ai_agent(arbiter, task_type="classification", sent=sent).run_sync(unique(f"{UNSURE} unsure"))
    assert raised.value.status_code == 409
    assert sent.requests == 1
    job = jobs.one()
    assert_held(job)


@compat("pydantic-ai", "held call", "`run_stream_sync`: before any output")
def test_pydantic_ai_streamed_held_call_raises_before_any_output(arbiter, live_db):
    jobs = NewJobs(arbiter)
    agent = pydantic_ai_agent(arbiter, task_type="classification")
    with pytest.raises(ModelHTTPError) as raised:
        agent.run_stream_sync(unique(f"{UNSURE} unsure")).get_output()
    assert raised.value.status_code == 409
    assert_held(jobs.one())


# --- litellm (as a client) ------------------------------------------------------------------------------


def litellm_call(arbiter, content: str, **options):
    return litellm.completion(
        model="openai/auto",
        api_base=f"{arbiter.url}/v1",
        api_key=arbiter.key,
        messages=[{"role": "user", "content": content}],
        **options,
    )


def litellm_route_headers(response) -> dict[str, str]:
    """litellm hands the provider's response headers back prefixed with `llm_provider-`."""
    headers = response._hidden_params["additional_headers"]
    prefix = "llm_provider-"
    return {name.removeprefix(prefix): value for name, value in headers.items() if name.startswith(prefix)}


@compat("litellm", "call", "`completion`")
@compat("litellm", "route headers", '`_hidden_params["additional_headers"]`, prefixed `llm_provider-`')
def test_litellm_completion_is_one_governed_job_with_its_route_in_the_headers(arbiter, live_db):
    jobs = NewJobs(arbiter)
    response = litellm_call(arbiter, unique(f"{CONFIDENT} Where is my parcel?"), extra_headers=HEADERS)
    assert response.choices[0].message.content
    job = jobs.one()
    assert_completed_and_routed(job, litellm_route_headers(response), arbiter)
    assert response.choices[0].message.content == job.result["output"]["content"]


@compat("litellm", "stream", "`stream=True`")
def test_litellm_stream_yields_the_answer_of_one_job(arbiter, live_db):
    jobs = NewJobs(arbiter)
    chunks = list(litellm_call(arbiter, unique(f"{CONFIDENT} Where is my parcel?"), extra_headers=HEADERS, stream=True))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    job = jobs.one()
    assert_completed_and_routed(job, None, arbiter)
    assert text == job.result["output"]["content"]


@compat("litellm", "tools", "`tools=`")
def test_litellm_tools_get_the_tool_call(arbiter, live_db):
    jobs = NewJobs(arbiter)
    tools = [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}]
    content = unique(f'{CONFIDENT} [call:lookup_order {{"order": "A-1"}}] Where is my parcel?')
    response = litellm_call(arbiter, content, extra_headers=HEADERS, tools=tools)
    calls = response.choices[0].message.tool_calls
    assert [(call.function.name, json.loads(call.function.arguments)) for call in calls] == [
        ("lookup_order", {"order": "A-1"})
    ]
    assert_completed_and_routed(jobs.one(), litellm_route_headers(response), arbiter)


@compat("litellm", "held call", "`APIError` 409, one request")
def test_litellm_held_call_on_default_retries_is_one_held_job_and_one_error(arbiter, live_db):
    sent = Sent()
    client = openai.OpenAI(
        base_url=f"{arbiter.url}/v1",
        api_key=arbiter.key,
        http_client=openai.DefaultHttpxClient(event_hooks={"request": [sent]}),
    )  # the SDK's default retries; litellm's own num_retries left at its default
    jobs = NewJobs(arbiter)
    with pytest.raises(litellm.exceptions.APIError) as raised:
        litellm_call(
            arbiter, unique(f"{UNSURE} unsure"), extra_headers={"x-arbiter-task-type": "classification"}, client=client
        )
    assert raised.value.status_code == 409
    assert sent.requests == 1
    job = jobs.one()
    assert_held(job)
    assert f"job {job.pk} is held for human approval" in str(raised.value)


@compat("litellm", "held call", "`stream=True`: before any chunk")
def test_litellm_stream_of_a_held_call_raises_before_any_chunk(arbiter, live_db):
    jobs = NewJobs(arbiter)
    chunks = []
    with pytest.raises(litellm.exceptions.APIError) as raised:
        for chunk in litellm_call(
            arbiter, unique(f"{UNSURE} unsure"), extra_headers={"x-arbiter-task-type": "classification"}, stream=True
        ):
            chunks.append(chunk)
    assert raised.value.status_code == 409
    assert chunks == []
    assert_held(jobs.one())


# --- instructor -----------------------------------------------------------------------------------------


def instructor_client(
    arbiter, *, task_type: str = "general", sent: Sent | None = None, heard: Heard | None = None
) -> instructor.Instructor:
    hooks = {"request": [sent] if sent else [], "response": [heard] if heard else []}
    client = openai.OpenAI(
        base_url=f"{arbiter.url}/v1",
        api_key=arbiter.key,
        default_headers={"x-arbiter-task-type": task_type},
        http_client=openai.DefaultHttpxClient(event_hooks=hooks),
    )  # the SDK's default retries
    return instructor.from_openai(client)  # its default mode, TOOLS: tool_choice names the response model


def classify(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": unique(f"{text} Classify: card charged twice")}]


@compat("instructor", "call", "`create`, `create_with_completion` (default `Mode.TOOLS`)")
@compat("instructor", "structured output", "the response model, through a forced call (`tool_choice` naming it)")
@compat("instructor", "route headers", "not shown by the client (an httpx response hook reads them)")
def test_instructor_default_mode_forces_its_function_and_returns_the_model_of_one_job(arbiter, live_db):
    heard = Heard()
    jobs = NewJobs(arbiter)
    ticket, completion = instructor_client(arbiter, heard=heard).create_with_completion(
        model="auto", response_model=Ticket, messages=classify(CONFIDENT)
    )  # instructor's own max_retries (3) left at its default
    assert isinstance(ticket, Ticket)
    job = jobs.one()
    assert_completed_and_routed(job, heard.headers, arbiter)
    assert job.request["parameters"]["tool_choice"] == {"type": "function", "function": {"name": "Ticket"}}
    call = job.result["output"]["tool_calls"][0]
    assert call["name"] == "Ticket"
    assert Ticket.model_validate(call["arguments"]).model_dump() == ticket.model_dump()
    assert json.loads(completion.choices[0].message.tool_calls[0].function.arguments) == call["arguments"]


@compat("instructor", "stream", "`create_partial`")
def test_instructor_create_partial_streams_the_model_of_one_job(arbiter, live_db):
    heard = Heard()
    jobs = NewJobs(arbiter)
    partials = list(
        instructor_client(arbiter, heard=heard).create_partial(
            model="auto", response_model=Ticket, messages=classify(CONFIDENT)
        )
    )
    assert len(partials) > 1 and partials[0].model_dump() != partials[-1].model_dump()  # incomplete ones first
    job = jobs.one()
    assert_completed_and_routed(job, heard.headers, arbiter)
    assert heard.headers["content-type"].startswith("text/event-stream")
    answered = Ticket.model_validate(job.result["output"]["tool_calls"][0]["arguments"])
    assert partials[-1].model_dump() == answered.model_dump()  # parsed by jiter's partial mode as it arrived


@compat("instructor", "held call", "`InstructorRetryException` from the 409, one request, one attempt")
def test_instructor_held_call_on_default_retries_is_one_held_job_and_one_error(arbiter, live_db):
    sent = Sent()
    jobs = NewJobs(arbiter)
    client = instructor_client(arbiter, task_type="classification", sent=sent)
    with pytest.raises(InstructorRetryException) as raised:
        client.create(model="auto", response_model=Ticket, messages=classify(UNSURE))
    held = raised.value.__cause__
    assert isinstance(held, openai.ConflictError) and held.code == "approval_required"
    assert raised.value.n_attempts == 1  # instructor re-asks only on a parse error
    assert sent.requests == 1
    job = jobs.one()
    assert_held(job)
    assert f"job {job.pk} is held for human approval" in str(raised.value)


@compat("instructor", "held call", "`create_partial`: before any partial")
def test_instructor_create_partial_of_a_held_call_raises_before_any_partial(arbiter, live_db):
    jobs = NewJobs(arbiter)
    client = instructor_client(arbiter, task_type="classification")
    partials = []
    with pytest.raises(InstructorRetryException) as raised:
        for partial in client.create_partial(model="auto", response_model=Ticket, messages=classify(UNSURE)):
            partials.append(partial)
    assert isinstance(raised.value.__cause__, openai.ConflictError)
    assert partials == []
    assert_held(jobs.one())
