"""Waiting on a hold: with `x-arbiter-wait-for-approval` a chat completion the policy holds stays open until
people decide it, then answers as if nothing was held (with its grant), or with the rejection; undecided
at the end of the wait it is the held job's 409, and a bad header is refused before any job is made."""

from __future__ import annotations

import json
import threading
import uuid

import httpx
import openai
import pytest

from controlplane.roles import Role
from review.services import approval_approve, approval_reject
from routing.models import Job, JobStatus
from tests.support.factories import UserFactory
from tests.support.governed import REFUND_TOOL
from tests.support.live import live_arbiter
from tests.support.personas import key_for
from tests.support.workers import wait_for

pytestmark = pytest.mark.slow

REFUND_PROMPT = (
    '[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {"amount": 150, "order": "A-17"}] '
    "Refund order A-17."
)


@pytest.fixture(scope="module")
def arbiter(django_db_setup, django_db_blocker, model_server):
    with django_db_blocker.unblock():
        yield from live_arbiter(model_server.base_url)


@pytest.fixture
def sdk(arbiter, live_db) -> openai.OpenAI:
    key = key_for(arbiter.setup.application, "jobs:read", "jobs:write", "grants:redeem")
    return openai.OpenAI(base_url=f"{arbiter.url}/v1", api_key=key, max_retries=0, timeout=120)


@pytest.mark.django_db
def test_the_database_is_set_up():
    pass  # the django_db test that makes pytest-django create the test database for this module


RESPONSES_REFUND_TOOL = [
    {"type": "function", "name": "issue_refund", "parameters": {"type": "object"}, "strict": False}
]


class Waiting:
    """A held refund's completion (or Response, `api="responses"`), sent with the wait header from another
    thread."""

    def __init__(self, sdk: openai.OpenAI, wait_s: str = "90", api: str = "chat") -> None:
        self.key = str(uuid.uuid4())
        self.outcome: object = None
        self.thread = threading.Thread(target=self._ask, args=(sdk, wait_s, api))
        self.thread.start()

    def _ask(self, sdk: openai.OpenAI, wait_s: str, api: str) -> None:
        headers = {"x-arbiter-task-type": "general", "x-arbiter-wait-for-approval": wait_s, "Idempotency-Key": self.key}
        try:
            if api == "responses":
                self.outcome = sdk.responses.with_raw_response.create(
                    model="auto", input=REFUND_PROMPT, tools=RESPONSES_REFUND_TOOL, extra_headers=headers
                )
            else:
                self.outcome = sdk.chat.completions.with_raw_response.create(
                    model="auto",
                    messages=[{"role": "user", "content": REFUND_PROMPT}],
                    tools=REFUND_TOOL,
                    extra_headers=headers,
                )
        except openai.APIError as error:
            self.outcome = error

    def held_job(self) -> Job:
        return wait_for(
            lambda: Job.objects.filter(idempotency_key=self.key, status=JobStatus.AWAITING_APPROVAL).first(),
            message="the refund to be held",
        )

    def result(self):
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()
        return self.outcome


def test_a_held_call_waits_for_the_approvals_and_answers_with_the_call_and_its_grant(sdk):
    waiting = Waiting(sdk)
    job = waiting.held_job()
    first, second = UserFactory(roles=[Role.REVIEWER]), UserFactory(roles=[Role.REVIEWER])
    approval_approve(job=job, user=first, reason="order checked")
    approval_approve(job=job, user=second, reason="amount checked")

    raw = waiting.result()
    assert not isinstance(raw, Exception), raw
    completion = raw.parse()
    assert raw.headers["x-arbiter-job-id"] == str(job.pk)
    (call,) = completion.choices[0].message.tool_calls
    assert call.function.name == "issue_refund"
    assert raw.headers["x-arbiter-grants"]  # the approved call's grant (tests/routing/api/test_grants.py)
    assert Job.objects.filter(idempotency_key=waiting.key).count() == 1


def test_a_held_response_waits_for_the_approvals_and_answers_with_the_function_call_and_its_grant(sdk):
    # The Responses API (what the OpenAI Agents SDK speaks by default) waits the same way.
    waiting = Waiting(sdk, api="responses")
    job = waiting.held_job()
    for reviewer in (UserFactory(roles=[Role.REVIEWER]), UserFactory(roles=[Role.REVIEWER])):
        approval_approve(job=job, user=reviewer, reason="checked")

    raw = waiting.result()
    assert not isinstance(raw, Exception), raw
    response = raw.parse()
    (call,) = [item for item in response.output if item.type == "function_call"]
    assert call.name == "issue_refund"
    (grant,) = response.model_extra["arbiter"]["grants"]
    assert grant["tool_call_id"] == call.call_id and raw.headers["x-arbiter-grants"] == grant["token"]
    assert Job.objects.filter(idempotency_key=waiting.key).count() == 1


def test_a_rejection_ends_the_wait_with_the_rejection(sdk):
    waiting = Waiting(sdk)
    job = waiting.held_job()
    approval_reject(job=job, user=UserFactory(roles=[Role.REVIEWER]), reason="not refundable")
    error = waiting.result()
    assert isinstance(error, openai.PermissionDeniedError)
    assert error.code == "job_rejected" and error.body["job_id"] == str(job.pk)
    assert "not refundable" not in error.message  # the reviewer's reason stays with the reviewers


def test_undecided_at_the_end_of_the_wait_it_is_the_held_jobs_409(sdk):
    error = Waiting(sdk, wait_s="1").result()
    assert isinstance(error, openai.ConflictError)
    assert error.code == "approval_required"
    assert Job.objects.get(pk=error.body["job_id"]).status == JobStatus.AWAITING_APPROVAL


def test_beyond_the_process_waits_a_held_call_answers_its_409_at_once(sdk, settings):
    settings.ARBITER_APPROVAL_WAITS_PER_PROCESS = 1
    first = Waiting(sdk)
    job = first.held_job()
    # The one wait slot of this (single) web process is taken: the second does not wait for its decision.
    error = Waiting(sdk, wait_s="300").result()
    assert isinstance(error, openai.ConflictError) and error.code == "approval_required"
    assert first.thread.is_alive()  # the first still waits, on a decision nobody has taken yet
    approval_approve(job=job, user=UserFactory(roles=[Role.REVIEWER]), reason="checked")
    approval_approve(job=job, user=UserFactory(roles=[Role.REVIEWER]), reason="checked too")
    assert first.result().http_response.status_code == 200


@pytest.mark.parametrize(
    ("header", "stream", "code"),
    [
        ("0", False, "invalid_wait"),
        ("soon", False, "invalid_wait"),
        ("999999", False, "invalid_wait"),
    ],
)
def test_a_bad_wait_header_is_refused_before_any_job_is_made(sdk, arbiter, header, stream, code):
    before = Job.objects.filter(application=arbiter.setup.application).count()
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": REFUND_PROMPT}],
            tools=REFUND_TOOL,
            stream=stream,
            extra_headers={"x-arbiter-task-type": "general", "x-arbiter-wait-for-approval": header},
        )
    assert refused.value.code == code
    assert Job.objects.filter(application=arbiter.setup.application).count() == before


def test_a_streamed_response_with_the_wait_header_is_refused_before_any_job_is_made(sdk, arbiter):
    # The Responses API's stream has no keep-alive path yet: refused rather than held open silently.
    before = Job.objects.filter(application=arbiter.setup.application).count()
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(
            model="auto", input=REFUND_PROMPT, tools=RESPONSES_REFUND_TOOL, stream=True,
            extra_headers={"x-arbiter-task-type": "general", "x-arbiter-wait-for-approval": "60"},
        )
    assert refused.value.code == "wait_not_streamable"
    assert Job.objects.filter(application=arbiter.setup.application).count() == before


class StreamWaiting:
    """A held refund's streamed completion with the wait header, read raw (SSE lines) from another thread."""

    def __init__(self, arbiter, key: str, wait_s: str = "90") -> None:
        self.key = str(uuid.uuid4())
        self.lines: list[bytes] = []
        self.status: int | None = None
        self.headers: dict = {}
        body = {"model": "auto", "stream": True, "tools": REFUND_TOOL,
                "messages": [{"role": "user", "content": REFUND_PROMPT}]}
        headers = {"Authorization": f"Bearer {key}", "x-arbiter-task-type": "general",
                   "x-arbiter-wait-for-approval": wait_s, "Idempotency-Key": self.key}
        self.thread = threading.Thread(target=self._read, args=(f"{arbiter.url}/v1/chat/completions", body, headers))
        self.thread.start()

    def _read(self, url: str, body: dict, headers: dict) -> None:
        with httpx.stream("POST", url, json=body, headers=headers, timeout=120) as response:
            self.status, self.headers = response.status_code, dict(response.headers)
            for line in response.iter_lines():
                self.lines.append(line.encode())

    def held_job(self) -> Job:
        return wait_for(
            lambda: Job.objects.filter(idempotency_key=self.key, status=JobStatus.AWAITING_APPROVAL).first(),
            message="the refund to be held",
        )

    def events(self) -> list[dict | str]:
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()
        return [line[6:].decode() if line == b"data: [DONE]" else json.loads(line[6:])
                for line in self.lines if line.startswith(b"data: ")]


def test_a_held_streamed_call_keeps_the_stream_alive_then_streams_the_approved_call_and_its_grant(
    arbiter, settings
):
    settings.ARBITER_STREAM_KEEPALIVE_S = 0.2
    key = key_for(arbiter.setup.application, "jobs:read", "jobs:write")
    waiting = StreamWaiting(arbiter, key)
    job = waiting.held_job()
    wait_for(lambda: len([line for line in waiting.lines if line.startswith(b":")]) >= 3,
             message="keep-alive comments while the call is held")
    assert not [line for line in waiting.lines if line.startswith(b"data:")]  # nothing of the answer yet
    for reviewer in (UserFactory(roles=[Role.REVIEWER]), UserFactory(roles=[Role.REVIEWER])):
        approval_approve(job=job, user=reviewer, reason="checked")

    events = waiting.events()
    assert waiting.status == 200 and waiting.headers["x-arbiter-job-id"] == str(job.pk)
    assert events[-1] == "[DONE]"
    chunks = [event for event in events if isinstance(event, dict)]
    deltas = [call for chunk in chunks for call in chunk["choices"][0]["delta"].get("tool_calls") or []]
    names = [call["function"]["name"] for call in deltas if call.get("function", {}).get("name")]
    assert names == ["issue_refund"]
    (grant,) = chunks[-1]["arbiter_grants"]
    assert grant["tool"] == "issue_refund" and grant["token"]


def test_a_rejection_ends_a_waiting_stream_with_an_error_event_the_sdk_raises(arbiter, sdk, settings):
    settings.ARBITER_STREAM_KEEPALIVE_S = 0.2
    outcome: list = []

    def ask() -> None:
        try:
            stream = sdk.chat.completions.create(
                model="auto", stream=True, tools=REFUND_TOOL, messages=[{"role": "user", "content": REFUND_PROMPT}],
                extra_headers={"x-arbiter-task-type": "general", "x-arbiter-wait-for-approval": "90",
                               "Idempotency-Key": key},
            )
            outcome.append(list(stream))
        except openai.APIError as error:
            outcome.append(error)

    key = str(uuid.uuid4())
    thread = threading.Thread(target=ask)
    thread.start()
    job = wait_for(lambda: Job.objects.filter(idempotency_key=key, status=JobStatus.AWAITING_APPROVAL).first(),
                   message="the refund to be held")
    approval_reject(job=job, user=UserFactory(roles=[Role.REVIEWER]), reason="not refundable")
    thread.join(timeout=120)
    (error,) = outcome
    assert isinstance(error, openai.APIError), error
    assert error.body["code"] == "job_rejected" and error.body["job_id"] == str(job.pk)
    assert "not refundable" not in str(error.body)  # the reviewer's reason stays with the reviewers
