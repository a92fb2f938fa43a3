"""One call, one job, under each real client's OWN default construction and retry settings.

Each client is built the way its documentation builds it — `openai.OpenAI(base_url=, api_key=)`,
`ChatOpenAI(model=, base_url=, api_key=)`, pydantic-ai's `OpenAIProvider(base_url=, api_key=)`,
`litellm.completion(...)`, the Agents SDK's `Runner` on `set_default_openai_client(AsyncOpenAI(...))` and its
default Responses API — with nothing about retries or timeouts changed. The only additions are the task-type
header (the policy's input) and an httpx event hook counting the HTTP requests the client really sends, so
each test shows whether the client's retry logic ran (a 504 the job outlives) or was stopped by
`x-should-retry: false` (held, failed), and that either way the application has exactly one job.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import litellm
import openai
import pytest
from django.test import override_settings
from langchain_openai import ChatOpenAI
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from routing.models import ApprovalRequest, Job, JobStatus
from tests.support.compat import compat
from tests.support.live import LiveArbiter, live_arbiter

pytestmark = pytest.mark.slow

UNSURE = "[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4]"
SURE = "[task:classification] [confidence:nano=0.95]"
TASK = {"x-arbiter-task-type": "classification"}


class Sent:
    """Counts the HTTP requests a client sends, its own retries included (an httpx request hook)."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request: object) -> None:
        self.requests += 1

    async def on_async(self, request: object) -> None:
        self.requests += 1

    def sync_http_client(self) -> openai.DefaultHttpxClient:
        return openai.DefaultHttpxClient(event_hooks={"request": [self]})

    def async_http_client(self) -> openai.DefaultAsyncHttpxClient:
        return openai.DefaultAsyncHttpxClient(event_hooks={"request": [self.on_async]})


@pytest.fixture(scope="module")
def arbiter(django_db_setup, django_db_blocker, model_server):
    with django_db_blocker.unblock():
        yield from live_arbiter(model_server.base_url)


@pytest.mark.django_db
def test_the_database_is_set_up():
    pass  # the django_db test that makes pytest-django create the test database for this module


# --- each client on its default construction ------------------------------------------------------------
# A call takes the arbiter, the counter, the prompt, and a list it appends what reaches the application to
# (the answer, or each streamed piece) — so a test sees that nothing did when the call raises.


def openai_sdk(arbiter: LiveArbiter, sent: Sent) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{arbiter.url}/v1", api_key=arbiter.key, default_headers=TASK, http_client=sent.sync_http_client()
    )  # max_retries (2) and timeout left at the SDK's defaults


def async_openai_sdk(arbiter: LiveArbiter, sent: Sent) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{arbiter.url}/v1", api_key=arbiter.key, default_headers=TASK, http_client=sent.async_http_client()
    )


def openai_chat(arbiter: LiveArbiter, sent: Sent, content: str, received: list) -> None:
    sdk = openai_sdk(arbiter, sent)
    completion = sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": content}])
    received.append(completion.choices[0].message.content)


def openai_chat_stream(arbiter: LiveArbiter, sent: Sent, content: str, received: list) -> None:
    sdk = openai_sdk(arbiter, sent)
    for chunk in sdk.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": content}], stream=True
    ):
        received.append(chunk)


def openai_async_chat(arbiter: LiveArbiter, sent: Sent, content: str, received: list) -> None:
    async def call() -> None:
        async with async_openai_sdk(arbiter, sent) as sdk:
            completion = await sdk.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": content}]
            )
            received.append(completion.choices[0].message.content)

    asyncio.run(call())


def openai_async_chat_stream(arbiter: LiveArbiter, sent: Sent, content: str, received: list) -> None:
    async def call() -> None:
        async with async_openai_sdk(arbiter, sent) as sdk:
            stream = await sdk.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": content}], stream=True
            )
            async for chunk in stream:
                received.append(chunk)

    asyncio.run(call())


def openai_responses(arbiter: LiveArbiter, sent: Sent, content: str, received: list) -> None:
    sdk = openai_sdk(arbiter, sent)
    received.append(sdk.responses.create(model="auto", input=content).output_text)


def openai_responses_stream(arbiter: LiveArbiter, sent: Sent, content: str, received: list) -> None:
    sdk = openai_sdk(arbiter, sent)
    for event in sdk.responses.create(model="auto", input=content, stream=True):
        received.append(event)


@pytest.fixture
def agents_default_client() -> Iterator[None]:
    """The Agents SDK's set-up is one process-wide default client: put back as it was after each test."""
    from agents import set_tracing_disabled
    from agents.models import _openai_shared

    previous = _openai_shared.get_default_openai_client()
    set_tracing_disabled(True)  # tracing would upload to OpenAI
    yield
    _openai_shared.set_default_openai_client(previous)  # type: ignore[arg-type]


def agents_run_sync(arbiter: LiveArbiter, sent: Sent, content: str, received: list) -> None:
    from agents import Agent, Runner, set_default_openai_client

    set_default_openai_client(async_openai_sdk(arbiter, sent), use_for_tracing=False)
    agent = Agent(name="support", instructions="Answer the customer.", model="auto")
    received.append(Runner.run_sync(agent, content).final_output)


def agents_run_streamed(arbiter: LiveArbiter, sent: Sent, content: str, received: list) -> None:
    from agents import Agent, Runner, set_default_openai_client

    set_default_openai_client(async_openai_sdk(arbiter, sent), use_for_tracing=False)
    agent = Agent(name="support", instructions="Answer the customer.", model="auto")

    async def run() -> None:
        result = Runner.run_streamed(agent, content)
        async for event in result.stream_events():
            if event.type == "raw_response_event":
                received.append(event)

    asyncio.run(run())


def langchain_chat(arbiter: LiveArbiter, sent: Sent) -> ChatOpenAI:
    return ChatOpenAI(
        model="auto",
        base_url=f"{arbiter.url}/v1",
        api_key=arbiter.key,
        default_headers=TASK,
        http_client=sent.sync_http_client(),
    )  # max_retries and timeout left at LangChain's defaults


def langchain_invoke(arbiter: LiveArbiter, sent: Sent, content: str, received: list) -> None:
    received.append(langchain_chat(arbiter, sent).invoke(content).content)


def langchain_stream(arbiter: LiveArbiter, sent: Sent, content: str, received: list) -> None:
    for chunk in langchain_chat(arbiter, sent).stream(content):
        received.append(chunk)


def pydantic_ai_agent(arbiter: LiveArbiter, sent: Sent) -> PydanticAgent:
    provider = OpenAIProvider(base_url=f"{arbiter.url}/v1", api_key=arbiter.key, http_client=sent.async_http_client())
    return PydanticAgent(OpenAIChatModel("auto", provider=provider), model_settings={"extra_headers": TASK})


def pydantic_ai_run_sync(arbiter: LiveArbiter, sent: Sent, content: str, received: list) -> None:
    received.append(pydantic_ai_agent(arbiter, sent).run_sync(content).output)


def pydantic_ai_run_stream(arbiter: LiveArbiter, sent: Sent, content: str, received: list) -> None:
    streamed = pydantic_ai_agent(arbiter, sent).run_stream_sync(content)
    for text in streamed.stream_text(delta=True):
        received.append(text)


class Relay:
    """litellm keeps one OpenAI client per endpoint for the whole process, built on `litellm.client_session`;
    the hook on that session counts into whichever `Sent` the current test set."""

    def __init__(self) -> None:
        self.sent = Sent()

    def __call__(self, request: object) -> None:
        self.sent(request)


LITELLM_RELAY = Relay()


@pytest.fixture(scope="module")
def litellm_session() -> Iterator[None]:
    previous = litellm.client_session
    litellm.client_session = openai.DefaultHttpxClient(event_hooks={"request": [LITELLM_RELAY]})
    yield
    litellm.client_session = previous


def litellm_completion(arbiter: LiveArbiter, sent: Sent, content: str, received: list, **options) -> None:
    LITELLM_RELAY.sent = sent
    response = litellm.completion(
        model="openai/auto",
        api_base=f"{arbiter.url}/v1",
        api_key=arbiter.key,
        messages=[{"role": "user", "content": content}],
        extra_headers=TASK,
        **options,
    )  # num_retries, max_retries and timeout left at litellm's defaults
    if options.get("stream"):
        for chunk in response:
            received.append(chunk)
    else:
        received.append(response.choices[0].message.content)


def litellm_stream(arbiter: LiveArbiter, sent: Sent, content: str, received: list) -> None:
    litellm_completion(arbiter, sent, content, received, stream=True)


def status_of(error: BaseException) -> int | None:
    """The HTTP status each client's error carries (LangChain and the Agents SDK raise the openai SDK's)."""
    return getattr(error, "status_code", None)


ERRORS = (openai.APIStatusError, ModelHTTPError, litellm.exceptions.APIError, litellm.exceptions.Timeout)


@dataclass(frozen=True)
class Shape:
    name: str
    call: Callable[[LiveArbiter, Sent, str, list], None]
    client: str
    held: str  # how the compatibility table says a held call of this shape ends


SAME = "`AsyncOpenAI` and `responses.create` the same"
SHAPES = [
    Shape("openai-chat", openai_chat, "openai", "`openai.ConflictError`, one request"),
    Shape("openai-chat-stream", openai_chat_stream, "openai", "streamed: before any chunk"),
    Shape("openai-async-chat", openai_async_chat, "openai", SAME),
    Shape("openai-async-chat-stream", openai_async_chat_stream, "openai", SAME),
    Shape("openai-responses", openai_responses, "openai", SAME),
    Shape("openai-responses-stream", openai_responses_stream, "openai", SAME),
    Shape("agents-run-sync", agents_run_sync, "agents", "`openai.ConflictError` from `run_sync`, one request"),
    Shape("agents-run-streamed", agents_run_streamed, "agents", "`run_streamed`: before any event"),
    Shape("langchain-invoke", langchain_invoke, "langchain", "`openai.ConflictError`, one request"),
    Shape("langchain-stream", langchain_stream, "langchain", "`stream`: before any chunk"),
    Shape("pydantic-ai-run-sync", pydantic_ai_run_sync, "pydantic-ai", "`ModelHTTPError` 409, one request"),
    Shape("pydantic-ai-run-stream", pydantic_ai_run_stream, "pydantic-ai", "`run_stream_sync`: before any output"),
    Shape("litellm-completion", litellm_completion, "litellm", "`APIError` 409, one request"),
    Shape("litellm-stream", litellm_stream, "litellm", "`stream=True`: before any chunk"),
]


def each_shape(how: str | None = None) -> list:
    """Every shape as a parameter, marked as a proof of its client's held-call cell (`how` None: the shape's
    own text)."""
    return [
        pytest.param(shape, id=shape.name, marks=compat(shape.client, "held call", how or shape.held))
        for shape in SHAPES
    ]


@pytest.fixture
def run(arbiter, live_db, litellm_session, agents_default_client):
    """Makes one call of a shape and answers (error raised, what reached the application, requests sent, new
    jobs of the application)."""

    def run(shape: Shape, content: str) -> tuple[BaseException, list, int, list[Job]]:
        before = set(Job.objects.filter(application=arbiter.setup.application).values_list("pk", flat=True))
        sent, received = Sent(), []
        with pytest.raises(ERRORS) as raised:
            shape.call(arbiter, sent, content, received)
        made = list(Job.objects.filter(application=arbiter.setup.application).exclude(pk__in=before))
        return raised.value, received, sent.requests, made

    return run


@pytest.mark.parametrize("shape", each_shape())
def test_a_held_call_is_one_held_job_one_request_and_one_error(run, shape):
    error, received, requests, made = run(shape, f"{UNSURE} unsure {uuid.uuid4().hex}")
    assert status_of(error) == 409
    assert received == []  # not the answer, not one streamed piece of it
    assert requests == 1  # `x-should-retry: false` stopped the client's default retries
    assert [job.status for job in made] == [JobStatus.AWAITING_APPROVAL]
    assert ApprovalRequest.objects.filter(job=made[0]).count() == 1
    assert str(made[0].pk) in str(error) or str(made[0].pk) in str(getattr(error, "body", ""))


@pytest.mark.parametrize("shape", each_shape("a failed call: one failed job, one request"))
def test_a_call_every_deployment_fails_is_one_failed_job_and_one_request(run, shape, model_server):
    model_server.set_faults("*", error_rate=1.0)
    try:
        with override_settings(ARBITER_RETRY_BASE_S=0.01):
            error, received, requests, made = run(shape, f"{SURE} every deployment fails {uuid.uuid4().hex}")
    finally:
        model_server.reset_faults("*")
    assert status_of(error) == 502
    assert received == []
    assert requests == 1  # a failed job is final: `x-should-retry: false`
    assert [job.status for job in made] == [JobStatus.FAILED]


@pytest.mark.parametrize("shape", each_shape("a 504 retried twice: the same job"))
def test_a_504_the_client_retries_finds_the_same_job_every_time(run, shape, arbiter):
    from controlplane.celery import app as celery_app

    # Nobody runs the job (inline runs off, its queue unheard), so every try waits out ARBITER_OPENAI_WAIT_S
    # and answers 504, which the clients retry by default: each retry must find the first try's job.
    celery_app.conf.task_default_queue = f"nobody-listens-{uuid.uuid4().hex[:8]}"
    try:
        with override_settings(ARBITER_OPENAI_WAIT_S=0.3, ARBITER_OPENAI_INLINE=False):
            error, received, requests, made = run(shape, f"{SURE} nobody picks this up {uuid.uuid4().hex}")
    finally:
        celery_app.conf.task_default_queue = arbiter.queue
    assert status_of(error) == 504
    assert received == []
    assert requests == 3  # the first try and the client's two default retries
    assert [job.status for job in made] == [JobStatus.QUEUED]
