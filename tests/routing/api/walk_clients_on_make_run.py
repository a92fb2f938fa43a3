"""Walk the real agent-framework clients against a running `make run`, each on its default settings.

    make run                                                        # in one terminal
    .venv/bin/python tests/routing/api/walk_clients_on_make_run.py  # in another, from the same checkout

The openai SDK (chat, streamed and not, sync and async; the Responses API, streamed and not), the OpenAI
Agents SDK (`Runner.run_sync` and `run_streamed` with a function tool, on its default Responses API),
LangChain `ChatOpenAI` (invoke, stream, bind_tools, with_structured_output), litellm (completion, streamed and
not), pydantic-ai (run_sync, run_stream) and instructor (create, create_partial), each built as its
documentation builds it: nothing about retries or timeouts changed. Every call is tagged with a label of its
own (`x-arbiter-labels`), so the REST jobs API shows exactly the jobs it made beside the demo's trickle: one
per model call, completed, the one the route headers name where the client shows them; a held call is one held
job and one error.

Not a test module (pytest does not collect it): it adds jobs, some held, to the demo. Prints PASS/FAIL per
check and exits 1 on any failure.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx2 as httpx
import instructor
import litellm
import openai
from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled
from instructor.core.exceptions import InstructorRetryException
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

creds = json.loads(Path(".data/demo-credentials.json").read_text())
BASE = creds["base_url"]
KEY = creds["api_key"]
SURE = "[task:classification] [confidence:nano=0.95,mini=0.95,flagship=0.95]"
UNSURE = "[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4]"
LOOKUP = '[call:lookup_order {"order": "A-1"}]'
REFUND = '[call:issue_refund {"amount": 50}]'
results: list[tuple[str, bool]] = []


def check(name: str, ok: bool, detail: object = "") -> None:
    results.append((name, ok))
    print(("PASS " if ok else "FAIL ") + name + (f"  [{detail}]" if detail and not ok else ""), flush=True)


class Call:
    """One walk call: its own label, and the jobs of the application that carry it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tag = uuid.uuid4().hex
        self.started = datetime.now(UTC)
        self.headers = {"x-arbiter-task-type": "classification", "x-arbiter-labels": json.dumps({"walk": self.tag})}

    def jobs(self) -> list[dict]:
        # A job is made before its answer, so every job of the call is listed once the call returned.
        api = httpx.Client(base_url=BASE, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        page = api.get("/api/v1/jobs", params={"created_after": self.started.isoformat(), "page_size": 200})
        page.raise_for_status()
        return [job for job in page.json()["results"] if (job.get("labels") or {}).get("walk") == self.tag]

    def detail(self, job_id: str) -> dict:
        api = httpx.Client(base_url=BASE, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        return api.get(f"/api/v1/jobs/{job_id}").raise_for_status().json()

    def completed(self, count: int = 1, headers: dict | None = None, answer: str | None = None) -> None:
        jobs = self.jobs()
        statuses = [job["status"] for job in jobs]
        check(f"{self.name}: {count} completed job(s)", statuses == ["completed"] * count, statuses)
        if headers is not None and jobs:
            ids = {job["id"] for job in jobs}
            check(
                f"{self.name}: the route headers name its job",
                headers.get("x-arbiter-job-id") in ids and bool(headers.get("x-arbiter-final-tier")),
                {name: value for name, value in headers.items() if name.startswith("x-arbiter")},
            )
        if answer is not None and len(jobs) == 1:
            released = (self.detail(jobs[0]["id"]).get("result") or {}).get("output", {}).get("content")
            check(f"{self.name}: the answer is the job's released answer", answer == released, (answer, released))

    def held(self, error: BaseException | None, sent: int, received: list) -> None:
        jobs = self.jobs()
        statuses = [job["status"] for job in jobs]
        check(f"{self.name}: one held job", statuses == ["awaiting_approval"], statuses)
        check(f"{self.name}: one error, 409", getattr(error, "status_code", None) == 409, repr(error)[:200])
        check(f"{self.name}: one HTTP request (no retry)", sent == 1, sent)
        check(f"{self.name}: nothing of the answer reached the caller", received == [], received[:3])


class Sent:
    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request: object) -> None:
        self.requests += 1

    async def on_async(self, request: object) -> None:
        self.requests += 1


def attempt(name: str, action) -> None:
    try:
        action()
    except Exception as error:  # a walk reports every failure and goes on
        check(f"{name}: ran", False, f"{type(error).__name__}: {error}"[:300])


# --- the openai SDK ---------------------------------------------------------------------------------------


def openai_sdk(call: Call, sent: Sent | None = None) -> openai.OpenAI:
    hooks = {"request": [sent]} if sent else {}
    return openai.OpenAI(
        base_url=f"{BASE}/v1",
        api_key=KEY,
        default_headers=call.headers,
        http_client=openai.DefaultHttpxClient(event_hooks=hooks),
    )


def openai_chat() -> None:
    call = Call("openai chat.completions.create")
    raw = openai_sdk(call).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": f"{SURE} Billing or tech?"}]
    )
    call.completed(headers=dict(raw.headers), answer=raw.parse().choices[0].message.content)


def openai_chat_stream() -> None:
    call = Call("openai chat.completions.create(stream=True)")
    raw = openai_sdk(call).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": f"{SURE} Billing or tech?"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    call.completed(headers=dict(raw.headers), answer=text)


def openai_async_chat_stream() -> None:
    call = Call("openai AsyncOpenAI stream=True")

    async def run() -> str:
        async with openai.AsyncOpenAI(base_url=f"{BASE}/v1", api_key=KEY, default_headers=call.headers) as sdk:
            stream = await sdk.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": f"{SURE} Billing or tech?"}], stream=True
            )
            return "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])

    call.completed(answer=asyncio.run(run()))


def openai_responses() -> None:
    call = Call("openai responses.create")
    raw = openai_sdk(call).responses.with_raw_response.create(model="auto", input=f"{SURE} Billing or tech?")
    call.completed(headers=dict(raw.headers), answer=raw.parse().output_text)


def openai_responses_stream() -> None:
    call = Call("openai responses.create(stream=True)")
    raw = openai_sdk(call).responses.with_raw_response.create(
        model="auto", input=f"{SURE} Billing or tech?", stream=True
    )
    text = "".join(event.delta for event in raw.parse() if event.type == "response.output_text.delta")
    call.completed(headers=dict(raw.headers), answer=text)


def openai_held(stream: bool) -> None:
    call = Call(f"openai held call{' streamed' if stream else ''}")
    sent, received, error = Sent(), [], None
    try:
        created = openai_sdk(call, sent).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": f"{UNSURE} unsure"}], stream=stream
        )
        received.extend(created if stream else [created])
    except openai.APIStatusError as raised:
        error = raised
    call.held(error, sent.requests, received)


# --- the OpenAI Agents SDK --------------------------------------------------------------------------------


@function_tool
def issue_refund(amount: int) -> str:
    """Refund an order."""
    return f"refunded {amount}"


def agents_client(call: Call, sent: Sent | None = None) -> None:
    hooks = {"request": [sent.on_async]} if sent else {}
    client = openai.AsyncOpenAI(
        base_url=f"{BASE}/v1",
        api_key=KEY,
        default_headers=call.headers,
        http_client=openai.DefaultAsyncHttpxClient(event_hooks=hooks),
    )
    set_default_openai_client(client, use_for_tracing=False)


def agents_run_sync() -> None:
    call = Call("Agents SDK Runner.run_sync with a function tool")
    agents_client(call)
    agent = Agent(name="support", instructions="Help with refunds.", model="auto", tools=[issue_refund])
    result = Runner.run_sync(agent, f"{SURE} {REFUND} refund order 7")
    outputs = [item.output for item in result.new_items if item.type == "tool_call_output_item"]
    check(f"{call.name}: the tool ran", outputs == ["refunded 50"], outputs)
    call.completed(count=len(result.raw_responses))
    check(f"{call.name}: a job per model call", len(result.raw_responses) == 2, len(result.raw_responses))


def agents_run_streamed() -> None:
    call = Call("Agents SDK Runner.run_streamed with a function tool")
    agents_client(call)
    agent = Agent(name="support", instructions="Help with refunds.", model="auto", tools=[issue_refund])

    async def run():
        result = Runner.run_streamed(agent, f"{SURE} {REFUND} refund order 8")
        kinds = [event.type async for event in result.stream_events()]
        return result, kinds

    result, kinds = asyncio.run(run())
    check(f"{call.name}: streamed events", "raw_response_event" in kinds, sorted(set(kinds)))
    check(f"{call.name}: an answer", bool(result.final_output), result.final_output)
    call.completed(count=len(result.raw_responses))
    check(f"{call.name}: a job per model call", len(result.raw_responses) == 2, len(result.raw_responses))


def agents_held() -> None:
    call = Call("Agents SDK held call")
    sent, received, error = Sent(), [], None
    agents_client(call, sent)
    try:
        received.append(Runner.run_sync(Agent(name="support", model="auto"), f"{UNSURE} unsure").final_output)
    except openai.APIStatusError as raised:
        error = raised
    call.held(error, sent.requests, received)


# --- LangChain ----------------------------------------------------------------------------------------------


class Ticket(BaseModel):
    label: str
    confidence: float


@tool
def lookup_order(order: str) -> str:
    """Look an order up by its id."""
    return order


def langchain(call: Call, sent: Sent | None = None) -> ChatOpenAI:
    hooks = {"request": [sent]} if sent else {}
    return ChatOpenAI(
        model="auto",
        base_url=f"{BASE}/v1",
        api_key=KEY,
        default_headers=call.headers,
        include_response_headers=True,  # to read the route; retries and timeout stay LangChain's defaults
        http_client=openai.DefaultHttpxClient(event_hooks=hooks),
    )


def langchain_invoke() -> None:
    call = Call("LangChain invoke")
    message = langchain(call).invoke(f"{SURE} Where is my parcel?")
    call.completed(headers=message.response_metadata["headers"], answer=message.content)


def langchain_stream() -> None:
    call = Call("LangChain stream")
    chunks = list(langchain(call).stream(f"{SURE} Where is my parcel?"))
    headers = next((c.response_metadata["headers"] for c in chunks if "headers" in c.response_metadata), {})
    call.completed(headers=headers, answer="".join(chunk.content for chunk in chunks))


def langchain_bind_tools() -> None:
    call = Call("LangChain bind_tools")
    message = langchain(call).bind_tools([lookup_order]).invoke(f"{SURE} {LOOKUP} Where is my parcel?")
    calls = [(tool_call["name"], tool_call["args"]) for tool_call in message.tool_calls]
    check(f"{call.name}: the tool call", calls == [("lookup_order", {"order": "A-1"})], calls)
    call.completed(headers=message.response_metadata["headers"])


def langchain_structured(method: str | None) -> None:
    call = Call(f"LangChain with_structured_output({method or 'default method'})")
    options = {"method": method} if method else {}
    result = (
        langchain(call)
        .with_structured_output(Ticket, include_raw=True, **options)
        .invoke(f"{SURE} Classify: card charged twice")
    )
    if method == "json_mode":
        # json_mode names no schema (a real model reads it from the prompt); the local model answers a JSON
        # object of its own, so what this shows is that a JSON object comes back through Arbiter.
        answer = json.loads(result["raw"].content)
        check(f"{call.name}: a JSON object", isinstance(answer, dict), result["raw"].content)
    else:
        check(f"{call.name}: a Ticket", isinstance(result["parsed"], Ticket), result.get("parsing_error"))
    call.completed(headers=result["raw"].response_metadata["headers"])


def langchain_held(stream: bool) -> None:
    call = Call(f"LangChain held call{' streamed' if stream else ''}")
    sent, received, error = Sent(), [], None
    chat = langchain(call, sent)
    try:
        if stream:
            received.extend(chat.stream(f"{UNSURE} unsure"))
        else:
            received.append(chat.invoke(f"{UNSURE} unsure"))
    except openai.APIStatusError as raised:
        error = raised
    call.held(error, sent.requests, received)


# --- litellm ------------------------------------------------------------------------------------------------


def litellm_completion(call: Call, content: str, **options):
    return litellm.completion(
        model="openai/auto",
        api_base=f"{BASE}/v1",
        api_key=KEY,
        messages=[{"role": "user", "content": content}],
        extra_headers=call.headers,
        **options,
    )


def litellm_headers(response) -> dict[str, str]:
    headers = response._hidden_params["additional_headers"]
    return {name.removeprefix("llm_provider-"): value for name, value in headers.items()}


def litellm_plain() -> None:
    call = Call("litellm completion")
    response = litellm_completion(call, f"{SURE} Where is my parcel?")
    call.completed(headers=litellm_headers(response), answer=response.choices[0].message.content)


def litellm_stream() -> None:
    call = Call("litellm completion(stream=True)")
    chunks = list(litellm_completion(call, f"{SURE} Where is my parcel?", stream=True))
    call.completed(answer="".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices))


def litellm_held(stream: bool) -> None:
    call = Call(f"litellm held call{' streamed' if stream else ''}")
    sent, received, error = Sent(), [], None
    litellm.client_session = openai.DefaultHttpxClient(event_hooks={"request": [sent]})
    litellm.in_memory_llm_clients_cache.flush_cache()  # a client on this session, not a cached one
    try:
        response = litellm_completion(call, f"{UNSURE} unsure", stream=stream)
        received.extend(response if stream else [response])
    except litellm.exceptions.APIError as raised:
        error = raised
    finally:
        litellm.client_session = None
    call.held(error, sent.requests, received)


# --- pydantic-ai --------------------------------------------------------------------------------------------


def pydantic_ai(call: Call, sent: Sent | None = None, output_type=str) -> PydanticAgent:
    hooks = {"request": [sent.on_async]} if sent else {}
    provider = OpenAIProvider(
        base_url=f"{BASE}/v1", api_key=KEY, http_client=openai.DefaultAsyncHttpxClient(event_hooks=hooks)
    )
    model = OpenAIChatModel("auto", provider=provider)
    return PydanticAgent(model, output_type=output_type, model_settings={"extra_headers": call.headers})


def pydantic_ai_run_sync() -> None:
    call = Call("pydantic-ai run_sync, default structured output")
    result = pydantic_ai(call, output_type=Ticket).run_sync(f"{SURE} Classify: card charged twice")
    check(f"{call.name}: a Ticket", isinstance(result.output, Ticket), result.output)
    call.completed()


def pydantic_ai_run_stream() -> None:
    call = Call("pydantic-ai run_stream")
    streamed = pydantic_ai(call).run_stream_sync(f"{SURE} Where is my parcel?")
    pieces = list(streamed.stream_text(delta=True))
    call.completed(answer="".join(pieces))


def pydantic_ai_held(stream: bool) -> None:
    call = Call(f"pydantic-ai held call{' streamed' if stream else ''}")
    sent, received, error = Sent(), [], None
    agent = pydantic_ai(call, sent)
    try:
        if stream:
            received.extend(agent.run_stream_sync(f"{UNSURE} unsure").stream_text(delta=True))
        else:
            received.append(agent.run_sync(f"{UNSURE} unsure").output)
    except ModelHTTPError as raised:
        error = raised
    call.held(error, sent.requests, received)


# --- instructor ---------------------------------------------------------------------------------------------


def instructor_client(call: Call, sent: Sent | None = None) -> instructor.Instructor:
    # Its default mode, TOOLS (tool_choice names the response model), over the SDK's default retries.
    return instructor.from_openai(openai_sdk(call, sent))


def instructor_create() -> None:
    call = Call("instructor create (Mode.TOOLS)")
    ticket = instructor_client(call).create(
        model="auto", response_model=Ticket, messages=[{"role": "user", "content": f"{SURE} card charged twice"}]
    )
    check(f"{call.name}: a Ticket", isinstance(ticket, Ticket), ticket)
    call.completed()


def instructor_create_partial() -> None:
    call = Call("instructor create_partial")
    partials = list(
        instructor_client(call).create_partial(
            model="auto", response_model=Ticket, messages=[{"role": "user", "content": f"{SURE} charged twice"}]
        )
    )
    check(f"{call.name}: the last partial is whole", bool(partials) and partials[-1].label is not None, partials)
    call.completed()


def instructor_held(stream: bool) -> None:
    call = Call(f"instructor held call{' create_partial' if stream else ''}")
    sent, received, error = Sent(), [], None
    client = instructor_client(call, sent)
    messages = [{"role": "user", "content": f"{UNSURE} unsure"}]
    try:
        if stream:
            received.extend(client.create_partial(model="auto", response_model=Ticket, messages=messages))
        else:
            received.append(client.create(model="auto", response_model=Ticket, messages=messages))
    except InstructorRetryException as raised:
        error = raised.__cause__  # the SDK's ConflictError: instructor re-asks only on a parse error
    call.held(error, sent.requests, received)


WALK = [
    ("openai chat", openai_chat),
    ("openai chat stream", openai_chat_stream),
    ("openai async stream", openai_async_chat_stream),
    ("openai responses", openai_responses),
    ("openai responses stream", openai_responses_stream),
    ("openai held", lambda: openai_held(stream=False)),
    ("openai held streamed", lambda: openai_held(stream=True)),
    ("Agents SDK run_sync", agents_run_sync),
    ("Agents SDK run_streamed", agents_run_streamed),
    ("Agents SDK held", agents_held),
    ("LangChain invoke", langchain_invoke),
    ("LangChain stream", langchain_stream),
    ("LangChain bind_tools", langchain_bind_tools),
    ("LangChain structured default", lambda: langchain_structured(None)),
    ("LangChain structured function_calling", lambda: langchain_structured("function_calling")),
    ("LangChain structured json_mode", lambda: langchain_structured("json_mode")),
    ("LangChain held", lambda: langchain_held(stream=False)),
    ("LangChain held streamed", lambda: langchain_held(stream=True)),
    ("litellm completion", litellm_plain),
    ("litellm stream", litellm_stream),
    ("litellm held", lambda: litellm_held(stream=False)),
    ("litellm held streamed", lambda: litellm_held(stream=True)),
    ("pydantic-ai run_sync", pydantic_ai_run_sync),
    ("pydantic-ai run_stream", pydantic_ai_run_stream),
    ("pydantic-ai held", lambda: pydantic_ai_held(stream=False)),
    ("pydantic-ai held streamed", lambda: pydantic_ai_held(stream=True)),
    ("instructor create", instructor_create),
    ("instructor create_partial", instructor_create_partial),
    ("instructor held", lambda: instructor_held(stream=False)),
    ("instructor held create_partial", lambda: instructor_held(stream=True)),
]

if __name__ == "__main__":
    set_tracing_disabled(True)  # the Agents SDK would upload traces to OpenAI
    started = time.monotonic()
    for name, action in WALK:
        attempt(name, action)
    failed = [name for name, ok in results if not ok]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed in {time.monotonic() - started:.1f}s")
    sys.exit(1 if failed else 0)
