"""`stream=True` through the real `openai` SDK against a live Arbiter: the governed answer, streamed only
once released; a held or blocked job is the same SDK error as without `stream`, before any byte."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid

import openai
import pytest
from django.conf import settings
from django.test import override_settings

from audit.models import LedgerEvent
from routing.models import Job, JobStatus
from tests.security.webserver import procfile_web
from tests.support.compat import compat
from tests.support.live import live_arbiter
from tests.support.workers import database_url_for_workers

pytestmark = pytest.mark.slow

REFUND_TOOL = [{"type": "function", "function": {"name": "issue_refund", "parameters": {"type": "object"}}}]
CONFIDENT = "[task:classification] [confidence:nano=0.95,mini=0.9,flagship=0.9]"
HELD = "[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4]"
REFUND = '[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {"amount": 50}] refund please'
ROUTE = ("x-arbiter-final-tier", "x-arbiter-escalations", "x-arbiter-policy-version", "x-arbiter-policy-sha256")


@pytest.fixture(scope="module")
def arbiter(django_db_setup, django_db_blocker, model_server):
    with django_db_blocker.unblock():
        yield from live_arbiter(model_server.base_url)


@pytest.fixture
def sdk(arbiter, live_db) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{arbiter.url}/v1", api_key=arbiter.key, max_retries=0, timeout=60)


def request(content: str, *, task_type: str = "classification", key: str | None = None, **fields):
    headers = {"x-arbiter-task-type": task_type} | ({"Idempotency-Key": key} if key else {})
    return {"model": "auto", "messages": [{"role": "user", "content": content}], "extra_headers": headers, **fields}


def reassembled(chunks) -> dict:
    """What a client rebuilds from the deltas: content, tool calls by index, finish reason."""
    content, calls, finish = None, {}, None
    for chunk in chunks:
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content is not None:
                content = (content or "") + delta.content
            for call in delta.tool_calls or []:
                slot = calls.setdefault(call.index, {"id": None, "type": None, "name": "", "arguments": ""})
                slot["id"] = call.id or slot["id"]
                slot["type"] = call.type or slot["type"]
                if call.function:
                    slot["name"] += call.function.name or ""
                    slot["arguments"] += call.function.arguments or ""
            finish = choice.finish_reason or finish
    return {"content": content, "tool_calls": [calls[index] for index in sorted(calls)], "finish_reason": finish}


def events_of(job_id: str) -> list[str]:
    return list(LedgerEvent.objects.filter(subject_job=job_id).order_by("id").values_list("event_type", flat=True))


@pytest.mark.django_db
def test_a_stream_without_a_key_is_401_in_openai_form(client):
    # Also the django_db test that makes pytest-django create the test database for this module.
    response = client.post(
        "/v1/chat/completions", {"model": "auto", "messages": [], "stream": True}, content_type="application/json"
    )
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "invalid_api_key"


@compat("openai", "stream", "`stream=True`")
def test_a_streamed_answer_is_the_non_streamed_answer_of_the_same_governed_job(sdk):
    key = f"stream-{uuid.uuid4().hex}"
    raw = sdk.chat.completions.with_raw_response.create(
        **request(f"{CONFIDENT} Billing or tech?", key=key), stream=True
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(chunks) > 3  # the role, content in pieces, the finish
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].choices[0].delta.content is None
    assert all(chunk.usage is None for chunk in chunks)
    streamed = reassembled(chunks)

    plain = sdk.chat.completions.with_raw_response.create(**request(f"{CONFIDENT} Billing or tech?", key=key))
    completion = plain.parse()
    assert plain.headers["x-arbiter-job-id"] == raw.headers["x-arbiter-job-id"]  # the same job
    assert streamed["content"] == completion.choices[0].message.content and streamed["content"]
    assert streamed["finish_reason"] == completion.choices[0].finish_reason
    assert {chunk.id for chunk in chunks} == {completion.id}
    assert chunks[0].model == completion.model
    for name in (*ROUTE, "x-arbiter-decision-id"):
        assert raw.headers[name] == plain.headers[name]
    job = Job.objects.get(pk=raw.headers["x-arbiter-job-id"])
    assert job.status == JobStatus.COMPLETED and raw.headers["x-arbiter-final-tier"] == "nano"
    decision = LedgerEvent.objects.get(pk=int(raw.headers["x-arbiter-decision-id"]))
    assert decision.event_type == "route.decided" and decision.subject_job == str(job.pk)


@compat("openai", "stream", "`AsyncOpenAI`")
def test_the_async_client_streams_the_same_answer(sdk, arbiter):
    async def stream() -> tuple[list, dict]:
        client = openai.AsyncOpenAI(base_url=f"{arbiter.url}/v1", api_key=arbiter.key, max_retries=0, timeout=60)
        async with client:
            raw = await client.chat.completions.with_raw_response.create(
                **request(f"{CONFIDENT} async: billing or tech?"), stream=True
            )
            return [chunk async for chunk in raw.parse()], dict(raw.headers)

    chunks, headers = asyncio.run(stream())
    completion = sdk.chat.completions.create(**request(f"{CONFIDENT} async: billing or tech?"))
    assert reassembled(chunks)["content"] == completion.choices[0].message.content
    assert Job.objects.get(pk=headers["x-arbiter-job-id"]).status == JobStatus.COMPLETED


@compat("openai", "tools", "streamed tool-call deltas")
def test_tool_call_deltas_reassemble_to_the_same_tool_call(sdk):
    key = f"stream-tool-{uuid.uuid4().hex}"
    chunks = list(
        sdk.chat.completions.create(**request(REFUND, task_type="general", key=key), tools=REFUND_TOOL, stream=True)
    )
    # The first delta of a call names it (index, id, type, function name); the rest carry its arguments.
    opening = next(chunk.choices[0].delta.tool_calls[0] for chunk in chunks if chunk.choices[0].delta.tool_calls)
    assert opening.index == 0 and opening.id and opening.type == "function"
    assert opening.function.name == "issue_refund" and opening.function.arguments == ""
    streamed = reassembled(chunks)
    message = sdk.chat.completions.create(**request(REFUND, task_type="general", key=key), tools=REFUND_TOOL)
    message = message.choices[0].message
    assert streamed["finish_reason"] == "tool_calls"
    assert streamed["content"] == message.content
    assert streamed["tool_calls"] == [
        {"id": call.id, "type": "function", "name": call.function.name, "arguments": call.function.arguments}
        for call in message.tool_calls
    ]
    assert json.loads(streamed["tool_calls"][0]["arguments"]) == {"amount": 50}


@compat("openai", "stream", "`include_usage`")
def test_include_usage_ends_with_a_usage_chunk_summing_every_step(sdk):
    chunks = list(
        sdk.chat.completions.create(
            **request("[task:classification] [confidence:nano=0.5,mini=0.6,flagship=0.9] escalates twice"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *answer, usage = chunks
    assert usage.choices == [] and usage.usage is not None
    assert all(chunk.usage is None for chunk in answer)
    steps = list(Job.objects.get(pk=usage.id.removeprefix("chatcmpl-")).steps.all())
    assert len(steps) == 3
    assert usage.usage.prompt_tokens == sum(step.prompt_tokens for step in steps)
    assert usage.usage.completion_tokens == sum(step.completion_tokens for step in steps)
    assert usage.usage.total_tokens == usage.usage.prompt_tokens + usage.usage.completion_tokens


def test_a_held_stream_is_the_sdks_409_before_any_chunk_and_one_held_job(sdk, arbiter):
    before = set(Job.objects.filter(application=arbiter.setup.application).values_list("pk", flat=True))
    received = []
    with pytest.raises(openai.ConflictError) as raised:
        for chunk in sdk.chat.completions.create(**request(f"{HELD} Unsure, streamed"), stream=True):
            received.append(chunk)
    assert received == []
    assert raised.value.code == "approval_required"
    assert raised.value.response.headers["content-type"].startswith("application/json")
    made = Job.objects.filter(application=arbiter.setup.application).exclude(pk__in=before)
    assert [job.status for job in made] == [JobStatus.AWAITING_APPROVAL]
    assert str(made[0].pk) == raised.value.body["job_id"] == raised.value.response.headers["x-arbiter-job-id"]


def test_a_blocked_stream_is_the_sdks_403_and_never_names_the_tool(sdk):
    with pytest.raises(openai.PermissionDeniedError) as raised:
        list(
            sdk.chat.completions.create(
                **request(
                    "[task:general] [confidence:mini=0.9,flagship=0.9] [call:delete_everything {}] tidy up, streamed",
                    task_type="general",
                ),
                tools=REFUND_TOOL,
                stream=True,
            )
        )
    assert raised.value.code == "tool_call_blocked"
    assert "delete_everything" not in raised.value.response.text


def test_a_stream_whose_job_does_not_finish_in_time_is_the_sdks_504_before_any_chunk(sdk, arbiter):
    from controlplane.celery import app as celery_app

    received = []
    celery_app.conf.task_default_queue = f"nobody-listens-{uuid.uuid4().hex[:8]}"
    try:
        with (
            override_settings(ARBITER_OPENAI_WAIT_S=0.3, ARBITER_OPENAI_INLINE=False),
            pytest.raises(openai.InternalServerError) as raised,
        ):
            received.extend(sdk.chat.completions.create(**request(f"{CONFIDENT} never picked up"), stream=True))
    finally:
        celery_app.conf.task_default_queue = arbiter.queue
    assert received == []
    assert raised.value.status_code == 504 and raised.value.code == "timeout"
    assert raised.value.response.headers["x-arbiter-job-id"] == raised.value.body["job_id"]


def test_a_streamed_job_writes_the_ledger_events_a_non_streamed_one_does(sdk):
    prompt = "[task:classification] [confidence:nano=0.3,mini=0.95] escalates once, streamed or not"
    # Two calls on purpose (distinct keys): identical requests close together are otherwise one call.
    raw = sdk.chat.completions.with_raw_response.create(**request(prompt, key=f"s-{uuid.uuid4().hex}"), stream=True)
    list(raw.parse())
    plain = sdk.chat.completions.with_raw_response.create(**request(prompt, key=f"p-{uuid.uuid4().hex}"))
    streamed_job, plain_job = raw.headers["x-arbiter-job-id"], plain.headers["x-arbiter-job-id"]
    assert streamed_job != plain_job
    escalated_once = [
        "job.submitted",
        "route.decided",
        "model.called",
        "confidence.scored",
        "job.escalated",
        "model.called",
        "confidence.scored",
        "job.completed",
    ]
    assert events_of(streamed_job) == events_of(plain_job) == escalated_once
    for name in ROUTE:
        assert raw.headers[name] == plain.headers[name]


@compat("openai", "stream", "`chat.completions.stream`")
def test_the_sdks_stream_helper_gives_the_final_completion(sdk):
    with sdk.chat.completions.stream(**request(f"{CONFIDENT} through the helper")) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    plain = sdk.chat.completions.create(**request(f"{CONFIDENT} through the helper"))
    assert final.choices[0].message.content == "".join(deltas) == plain.choices[0].message.content
    assert final.choices[0].finish_reason == "stop"


def post(arbiter, body: dict, **headers: str):
    """A plain HTTP client (urllib): the response, open and unread."""
    return urllib.request.urlopen(
        urllib.request.Request(
            f"{arbiter.url}/v1/chat/completions",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {arbiter.key}", "Content-Type": "application/json", **headers},
        ),
        timeout=60,
    )


def test_a_plain_event_stream_client_reads_data_lines_ending_with_done(arbiter, live_db):
    body = {"model": "auto", "messages": [{"role": "user", "content": f"{CONFIDENT} raw SSE"}], "stream": True}
    with post(arbiter, body, Accept="text/event-stream") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-cache"
        events = response.read().decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(event.startswith("data: {") for event in events[:-2])
    assert "".join(json.loads(event[6:])["choices"][0]["delta"].get("content") or "" for event in events[:-2])


def test_a_stream_being_read_holds_no_synchronous_call_slot(arbiter, live_db):
    # The slot bounds running jobs; the job is settled before the first byte, so a slow reader of one
    # stream does not keep the key's only slot from the next call.
    body = {"model": "auto", "messages": [{"role": "user", "content": f"{CONFIDENT} slow reader"}], "stream": True}
    with override_settings(ARBITER_SYNC_CALLS_PER_KEY=1), post(arbiter, body) as reading:
        assert reading.status == 200
        assert reading.readline().startswith(b"data: {")
        # The first stream is still open, read no further: the next call gets the key's one slot.
        with post(arbiter, body | {"stream": False}) as again:
            assert again.status == 200
            assert json.loads(again.read())["object"] == "chat.completion"
        assert reading.read().endswith(b"data: [DONE]\n\n")


@pytest.fixture(scope="module")
def gunicorn(arbiter, model_server):
    env = {
        "DATABASE_URL": database_url_for_workers(),
        "REDIS_URL": settings.REDIS_URL,
        "ARBITER_QUEUE": arbiter.queue,
        "ARBITER_MODELSERVER_URL": model_server.base_url,
        "ARBITER_RATE_LIMIT_PER_MINUTE": "0",
        "WEB_CONCURRENCY": "1",
    }
    with procfile_web(env) as server:
        yield server


def test_through_the_procfiles_gunicorn_the_sdk_streams_and_a_held_call_is_its_409(arbiter, gunicorn, live_db):
    sdk = openai.OpenAI(base_url=f"{gunicorn.url}/v1", api_key=arbiter.key, max_retries=0, timeout=60)
    raw = sdk.chat.completions.with_raw_response.create(**request(f"{CONFIDENT} through gunicorn"), stream=True)
    assert raw.headers["transfer-encoding"] == "chunked"  # no Content-Length: written as it is produced
    chunks = list(raw.parse())
    completion = sdk.chat.completions.create(**request(f"{CONFIDENT} through gunicorn"))
    assert reassembled(chunks)["content"] == completion.choices[0].message.content
    job = Job.objects.get(pk=raw.headers["x-arbiter-job-id"])
    assert job.status == JobStatus.COMPLETED and job.claimed_by.startswith("web@")
    with pytest.raises(openai.ConflictError):
        list(sdk.chat.completions.create(**request(f"{HELD} held, through gunicorn"), stream=True))


def test_stream_options_must_be_an_object_of_known_options(sdk, arbiter):
    before = Job.objects.filter(application=arbiter.setup.application).count()
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(**request("hi"), stream=True, stream_options={"include_usage": "sometimes"})
    assert raised.value.param == "stream_options.include_usage"
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(**request("hi"), stream=True, extra_body={"stream_options": {"chunk_size": 3}})
    assert raised.value.param == "stream_options.chunk_size"
    assert Job.objects.filter(application=arbiter.setup.application).count() == before


def test_pieces_rebuild_any_answer_and_no_answer_can_end_or_forge_an_event():
    from routing.api.openai_stream import completion_chunks, pieces, server_sent_events

    hostile = "  lead\n\ndata: [DONE]\n\nevent: x\r\n" + "y" * 300 + " \u2028 tail\t"
    assert "".join(pieces(hostile)) == hostile
    assert max(len(piece) for piece in pieces(hostile)) <= 64 + 4
    completion = {
        "id": "chatcmpl-1",
        "created": 1,
        "model": "m",
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"content": hostile}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    wire = b"".join(server_sent_events(completion_chunks(completion, include_usage=True))).decode()
    events = wire.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(event.startswith("data: {") and "\n" not in event and "\r" not in event for event in events[:-2])
    text = "".join(json.loads(event[6:])["choices"][0]["delta"].get("content") or "" for event in events[:-3])
    assert text == hostile
