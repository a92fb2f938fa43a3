"""An OpenAI-compatible face: `POST /v1/chat/completions` and `GET /v1/models`.

A completion request becomes a job through the same `job_submit` as the REST API (same pipeline, same
ledger). The request thread has to wait for the job's outcome anyway, so by default
(`ARBITER_OPENAI_INLINE`) it runs the job itself with the worker's own code — claim, route, call, score,
escalate, govern, each fenced by attempt — rather than handing it to Celery and waiting for a notice: no
broker hop, no second process. If it dies half-way the job is recovered exactly as a worker's would be
(the sweeper re-sends it once its dispatch or lease goes stale). With inline off, a worker runs it and
the view waits. Either way the answer is a standard `chat.completion` built from the accepted step, the
route in `x-arbiter-*` headers; with `stream: true` the same released answer as server-sent chunks
(`routing.api.openai_stream`), a refusal still a JSON error before any byte. `model` names a policy:
`auto` is the default policy, `arbiter/<policy>` a named one.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from audit.ledger import Actor
from audit.sealer import sealing_deferred
from routing import selectors
from routing.api.base import ApiView
from routing.api.errors import Problem, openai_body
from routing.api.jobs import idempotency_key_from
from routing.api.openai_models import MODEL_PREFIX, model_entry
from routing.api.openai_retries import implicit_window
from routing.api.openai_stream import (
    EVENT_STREAM,
    EventStreamNegotiation,
    completion_chunks,
    event_stream,
    event_stream_response,
    server_sent_events,
)
from routing.api.parsers import check_json_value
from routing.api.ratelimit import SyncCallsExceeded, SyncCallsUnavailable, approval_wait_slot, sync_call_slot
from routing.api.schema import OpenAIErrorSerializer
from routing.api.serializers.common import LabelsField
from routing.api.serializers.openai import (
    ChatCompletionInputSerializer,
    ChatCompletionOutputSerializer,
    ModelListOutputSerializer,
)
from routing.decide import parameters as caller_parameters
from routing.decide.tiers import TASK_TYPES
from routing.execute import dispatch
from routing.execute.run import job_run
from routing.execute.settled import job_settled_wait
from routing.models import ApiKey, Application, Job, JobStatus
from routing.models.jobs import TERMINAL_STATUSES
from routing.release import is_released, released_result, released_status_reason
from routing.selectors import JobCompletion
from routing.services.grants import grant_as_given
from routing.services.jobs import IdempotencyConflict, JobError, NoActivePolicy, job_submit
from routing.services.runs import RunClosed, RunNotFound

TASK_TYPE_HEADER = "HTTP_X_ARBITER_TASK_TYPE"
WAIT_HEADER = "HTTP_X_ARBITER_WAIT_FOR_APPROVAL"
LABELS_HEADER = "HTTP_X_ARBITER_LABELS"
RUN_ID_HEADER = "HTTP_X_ARBITER_RUN_ID"
RUN_ROLE_HEADER = "HTTP_X_ARBITER_RUN_ROLE"
SETTLED = TERMINAL_STATUSES | {JobStatus.AWAITING_APPROVAL}
FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter"}
IGNORED_PARAMS_HEADER = "x-arbiter-ignored-params"
GRANTS_HEADER = "x-arbiter-grants"

logger = logging.getLogger(__name__)


def openai_error(
    message: str,
    *,
    status_code: int,
    code: str,
    param: str | None = None,
    job: Job | JobCompletion | None = None,
    **extra: Any,
) -> Problem:
    errors = [{"field": param, "message": message}] if param else []
    headers = {}
    if job is not None:
        extra |= {"job_id": str(job.pk), "job_url": f"/api/v1/jobs/{job.pk}"}
        headers["x-arbiter-job-id"] = str(job.pk)
        if job.run_id is not None:
            headers["x-arbiter-run-id"] = str(job.run_id)
    return Problem(message, status_code=status_code, code=code, errors=errors, extra=extra, headers=headers)


class SyncCallRefused(Problem):
    def __init__(self, message: str, *, status_code: int, code: str, wait: int, **extra: Any) -> None:
        super().__init__(message, status_code=status_code, code=code, extra=extra)
        self.wait = wait  # Retry-After (routing.api.errors)


@contextmanager
def sync_slot_or_refusal(key: ApiKey) -> Iterator[None]:
    """One of the bounded synchronous-call slots (routing.api.ratelimit), or a 429/503 naming why."""
    with ExitStack() as stack:
        try:
            stack.enter_context(sync_call_slot(key))
        except SyncCallsExceeded as exceeded:
            raise SyncCallRefused(
                str(exceeded),
                status_code=429,
                code="concurrency_limit_exceeded",
                wait=exceeded.retry_after,
                limit=exceeded.limit,
            ) from None
        except SyncCallsUnavailable as unavailable:
            logger.error("synchronous completion refused: %s", unavailable)
            raise SyncCallRefused(
                "synchronous completions are unavailable for a moment (the concurrency limiter cannot be "
                "reached); retry shortly",
                status_code=503,
                code="service_unavailable",
                wait=settings.ARBITER_SYNC_RETRY_AFTER_S,
            ) from None
        yield


def policy_for_model(model: str) -> str | None:
    if model == "auto":
        return None
    if model.startswith(MODEL_PREFIX) and len(model) > len(MODEL_PREFIX):
        return model[len(MODEL_PREFIX) :]
    raise openai_error(
        f"the model {model!r} does not exist: use `auto` (the default policy) or `arbiter/<policy>`; "
        "GET /v1/models lists them",
        status_code=404,
        code="model_not_found",
        param="model",
    )


def routing_facts(request: Request, metadata: dict[str, str]) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(task_type, labels, remaining metadata) from the x-arbiter-* headers, else from `metadata`."""
    metadata = dict(metadata)
    task_type = request.META.get(TASK_TYPE_HEADER) or metadata.pop("task_type", None) or "general"
    metadata.pop("task_type", None)
    if task_type not in TASK_TYPES:
        raise openai_error(
            f"unknown task type {task_type!r}; allowed: {', '.join(TASK_TYPES)}",
            status_code=400,
            code="invalid_task_type",
            param="x-arbiter-task-type",
        )
    raw_labels = request.META.get(LABELS_HEADER) or metadata.pop("labels", None)
    metadata.pop("labels", None)
    labels: dict[str, Any] = {}
    if raw_labels:
        try:
            labels = LabelsField().to_internal_value(json.loads(raw_labels))
            check_json_value(labels, max_depth=2)
        except Problem as problem:
            raise openai_error(
                f"labels: {problem.detail}", status_code=400, code="invalid_labels", param="x-arbiter-labels"
            ) from None
        except (ValueError, serializers.ValidationError) as error:
            detail = error.detail[0] if isinstance(error, serializers.ValidationError) else "not valid JSON"
            raise openai_error(
                f"labels must be a JSON object of scalar values: {detail}",
                status_code=400,
                code="invalid_labels",
                param="x-arbiter-labels",
            ) from None
    return task_type, labels, metadata


def run_facts(request: Request) -> dict[str, Any]:
    """The run a call joins (`x-arbiter-run-id`: `new` or a UUID) and its role (`x-arbiter-run-role`), for
    job_submit (routing.services.runs); nothing when the call names no run."""
    run_id, run_role = request.META.get(RUN_ID_HEADER, "").strip(), request.META.get(RUN_ROLE_HEADER, "").strip()
    if not run_id:
        if run_role:
            raise openai_error(
                "x-arbiter-run-role needs x-arbiter-run-id",
                status_code=400,
                code="invalid_run",
                param="x-arbiter-run-id",
            )
        return {}
    return {"run_id": run_id, "run_role": run_role}


def job_run_inline(job: Job) -> None:
    """Run the job in this request's thread, as a worker named after this process would."""
    # The run's own id ends the claim's name: the message that hands the job over on failure carries it as
    # its task id, which tells the worker this run is over (routing.tasks.execute_job's `ended_run`).
    run_id = str(uuid.uuid4())
    worker = f"web@{socket.gethostname()}:{os.getpid()}:{run_id}"
    try:
        job_run(job_id=str(job.pk), worker=worker, job=job)
    except Exception:
        # A bug or an outage (the database went away), not a provider fault (those end as a failed step).
        # Hand the job to the workers, which take over at once; the caller waits as for any queued job.
        logger.exception("inline run of job %s failed; dispatching it to a worker", job.pk)
        dispatch.send_recovery(dispatch.EXECUTE_JOB, str(job.pk), task_id=run_id)


def job_wait(*, application: Application, job: Job, timeout_s: float) -> JobCompletion:
    """Wait until the job finishes or is held (the pipeline's settled notice wakes us at once; the row is
    re-read at least every second in case a notice was lost); 504 at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        completion = selectors.job_completion_for_application(application=application, job_id=job.pk)
        if completion is not None and completion.status in SETTLED:
            return completion
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise openai_error(
                f"job {job.pk} did not finish within {timeout_s:g} s; it goes on — follow it at /api/v1/jobs/{job.pk}",
                status_code=504,
                code="timeout",
                job=job,
            )
        job_settled_wait(job.pk, min(remaining, 1.0))


def approval_wait_from(request: Request, data: dict[str, Any], *, streamable: bool = False) -> int | None:
    """The seconds `x-arbiter-wait-for-approval` asks to wait for a held job's decision, if it asks.
    `streamable`: the endpoint can wait inside a stream (chat completions: keep-alives, then the answer)."""
    raw = request.META.get(WAIT_HEADER)
    if raw is None:
        return None
    longest = settings.ARBITER_APPROVAL_WAIT_MAX_S
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= longest):
        raise openai_error(
            f"x-arbiter-wait-for-approval must be a whole number of seconds from 1 to {longest}",
            status_code=400,
            code="invalid_wait",
            param="x-arbiter-wait-for-approval",
        )
    if data["stream"] and not streamable:
        raise openai_error(
            "x-arbiter-wait-for-approval is not taken with `stream: true` here: a stream's first byte would have to "
            "go out before the decision; wait without streaming, or retry with the same Idempotency-Key after it",
            status_code=400,
            code="wait_not_streamable",
            param="x-arbiter-wait-for-approval",
        )
    return int(raw)


def decision_wait(*, application: Application, completion: JobCompletion, timeout_s: float) -> JobCompletion:
    """Keep a held job's request open until people decide it (and a job they escalate or send back to a
    tier finishes), for at most `timeout_s`; the job as it then is. The wait holds a thread of this
    process (approval_wait_slot) but no model-call slot; when this process has no wait slot to spare it
    does not wait, and the held job's 409 goes back at once as without the header."""
    try:
        with approval_wait_slot():
            return _decided_by(application, completion, time.monotonic() + timeout_s)
    except SyncCallsExceeded as busy:
        logger.info("not waiting on the approval of job %s: %s", completion.pk, busy)
    return completion


def _decided_by(application: Application, completion: JobCompletion, deadline: float) -> JobCompletion:
    """The job once decided (and finished, if people sent it on), or as it is at `deadline` (monotonic)."""
    while completion.status not in TERMINAL_STATUSES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        job_settled_wait(completion.pk, min(remaining, 1.0))
        fresh = selectors.job_completion_for_application(application=application, job_id=completion.pk)
        completion = fresh or completion
    return completion


KEEPALIVE = b": waiting for a decision on the held answer\n\n"


def streamed_decision(
    *, application: Application, completion: JobCompletion, timeout_s: float, include_usage: bool
) -> StreamingHttpResponse | None:
    """A held job's streamed completion that waits for the decision: SSE comments every
    ARBITER_STREAM_KEEPALIVE_S (the SDKs skip them) until people decide, then the released answer's chunks
    (its grants on the last one, `arbiter_grants`), or one error event (`job_rejected`, or `approval_required`
    if still undecided at the end), which the SDKs raise as an APIError. Nothing of the answer is sent
    before its release. None when this process has no wait slot to spare: the caller answers the 409."""
    slot = ExitStack()
    try:
        slot.enter_context(approval_wait_slot())
    except SyncCallsExceeded as busy:
        logger.info("not waiting on the approval of job %s: %s", completion.pk, busy)
        return None

    def events() -> Iterator[bytes]:
        decided = completion
        with slot:  # released when the stream ends, or when the client goes away and the server closes it
            deadline = time.monotonic() + timeout_s
            while decided.status not in TERMINAL_STATUSES and time.monotonic() < deadline:
                yield KEEPALIVE
                until = min(deadline, time.monotonic() + settings.ARBITER_STREAM_KEEPALIVE_S)
                decided = _decided_by(application, decided, until)
        if is_released(decided):
            yield from server_sent_events(completion_chunks(chat_completion(decided), include_usage=include_usage))
        else:
            yield b"data: " + json.dumps(openai_body(_refusal(decided)), separators=(",", ":")).encode() + b"\n\n"

    return event_stream(events(), headers=route_headers(completion))


def _refusal(job: JobCompletion) -> Problem:
    if job.status == JobStatus.AWAITING_APPROVAL:
        return openai_error(
            f"job {job.pk} is held for human approval; its answer is not released until the reviewers the "
            f"policy requires decide — follow it at /api/v1/jobs/{job.pk}",
            status_code=409,
            code="approval_required",
            job=job,
        )
    if job.status == JobStatus.BLOCKED:
        return openai_error(
            f"job {job.pk}: {released_status_reason(job)}",
            status_code=403,
            code="tool_call_blocked",
            job=job,
        )
    if job.status in (JobStatus.REJECTED, JobStatus.EXPIRED, JobStatus.CANCELLED):
        return openai_error(
            f"job {job.pk} was {job.status}: {released_status_reason(job)}",
            status_code=409 if job.status != JobStatus.REJECTED else 403,
            code=f"job_{job.status}",
            job=job,
        )
    upstream = selectors.job_upstream_refusal_status(job.pk) if job.status == JobStatus.FAILED else None
    if upstream is not None:
        # The provider refused the request itself: the caller's to fix, so its 4xx and reason, not a 502.
        return openai_error(
            f"job {job.pk} failed: {released_status_reason(job)}",
            status_code=upstream,
            code="upstream_invalid_request",
            job=job,
        )
    return openai_error(
        f"job {job.pk} failed: {released_status_reason(job)}", status_code=502, code="job_failed", job=job
    )


def chat_completion(job: JobCompletion) -> dict[str, Any]:
    """The answer as a `chat.completion`; only ever built from a released result (the release gate)."""
    result = released_result(job)
    if result is None:
        raise _refusal(job)
    output = result.get("output") or {}
    # The last attempt's accepted step: an earlier, superseded attempt may have used the same index.
    accepted = next(
        (s for s in reversed(job.steps) if s["index"] == result.get("step_index") and s["outcome"] == "accepted"),
        None,
    )
    tool_calls = [
        {
            "id": call.get("id") or f"call_{index}",
            "type": "function",
            "function": {
                "name": call.get("name", ""),
                "arguments": call["arguments"]
                if isinstance(call.get("arguments"), str)
                else json.dumps(call.get("arguments", {})),
            },
        }
        for index, call in enumerate(output.get("tool_calls") or [])
    ]
    message: dict[str, Any] = {"role": "assistant", "content": output.get("content"), "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    finish_reason = "tool_calls" if tool_calls else output.get("finish_reason")
    prompt = sum(step["prompt_tokens"] for step in job.steps)
    completion = sum(step["completion_tokens"] for step in job.steps)
    return {
        "id": f"chatcmpl-{job.id.hex}",
        "object": "chat.completion",
        "created": int(job.created_at.timestamp()),
        "model": (accepted["model"] if accepted and accepted["model"] else None) or f"{MODEL_PREFIX}{job.policy_name}",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": output.get("logprobs"),
                "finish_reason": finish_reason if finish_reason in FINISH_REASONS else "stop",
            }
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        "system_fingerprint": None,
        **({"arbiter_grants": released_grants(job)} if job.grants else {}),
    }


def released_grants(job: JobCompletion) -> list[dict[str, Any]]:
    """The signed approval grants of a released answer's tool calls (routing.services.grants)."""
    return [grant_as_given(**grant) for grant in job.grants] if is_released(job) else []


def ignored_parameters(job: JobCompletion, policy_decided: list[str]) -> list[str]:
    """The caller's parameters that did not shape the answer: decided by the policy, or not taken by the
    deployment that answered (kept with the released result)."""
    dropped = (released_result(job) or {}).get("ignored_parameters") or []
    return sorted(set(policy_decided) | set(dropped))


def route_headers(job: JobCompletion) -> dict[str, str]:
    decision = job.decision_event_id
    return {
        "x-arbiter-job-id": str(job.id),
        **({"x-arbiter-run-id": str(job.run_id)} if job.run_id else {}),
        "x-arbiter-decision-id": "" if decision is None else str(decision),
        "x-arbiter-final-tier": job.final_tier or "",
        "x-arbiter-escalations": str(job.escalations),
        "x-arbiter-policy-version": f"{job.policy_name}@v{job.policy_version_number}",
        "x-arbiter-policy-sha256": job.policy_version_sha256,
        **({GRANTS_HEADER: ",".join(grant["token"] for grant in released_grants(job))} if job.grants else {}),
    }


OPENAI_ERRORS = {
    code: OpenApiResponse(OpenAIErrorSerializer, description=description)
    for code, description in {
        400: "Invalid request (OpenAI error object): a wrong field, an unknown task type.",
        401: "No key, or an invalid, revoked or expired one.",
        403: "Missing scope, or the job was blocked (`tool_call_blocked`) or rejected (`job_rejected`).",
        404: "`model_not_found`: `model` is not `auto` or `arbiter/<policy>` of an existing policy.",
        405: "Method not allowed.",
        406: "Only JSON is served.",
        409: "`approval_required`: the job is held for a human; or it expired or was cancelled.",
        413: "The body is larger than the limit.",
        415: "The body must be application/json.",
        422: "`idempotency_conflict` or `no_active_policy`.",
        429: "Rate limit for this key reached, or `concurrency_limit_exceeded` (too many synchronous completions "
        "running for this key, in all, or in this server process; `limit` names the setting); see Retry-After.",
        502: "`job_failed`: no tier produced an answer.",
        503: "`service_unavailable`: the concurrency limiter (Redis) cannot be reached; see Retry-After.",
        504: "`timeout`: the job did not finish in time; it goes on (see `job_url`).",
    }.items()
}


# The request headers both OpenAI-compatible operations (chat completions, responses) take.
ROUTING_HEADERS = [
    OpenApiParameter("x-arbiter-task-type", str, OpenApiParameter.HEADER, enum=list(TASK_TYPES)),
    OpenApiParameter(
        "x-arbiter-labels",
        str,
        OpenApiParameter.HEADER,
        description='A JSON object of scalar labels, e.g. {"region": "eu"}.',
    ),
    OpenApiParameter(
        "x-arbiter-run-id",
        str,
        OpenApiParameter.HEADER,
        description="The agent run the call joins: `new` opens one (its id comes back in `x-arbiter-run-id`); a UUID "
        "joins this application's run of that id, or opens one with it; another application's run is 404 "
        "`run_not_found`. The policy's `runs:` limits apply.",
    ),
    OpenApiParameter(
        "x-arbiter-run-role",
        str,
        OpenApiParameter.HEADER,
        enum=["planner", "subagent"],
        description="The call's role in its run; by default the call that opens the run is its planner.",
    ),
    OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER),
]
WAIT_PARAMETER = OpenApiParameter(
    "x-arbiter-wait-for-approval",
    int,
    OpenApiParameter.HEADER,
    description="Seconds (1 to ARBITER_APPROVAL_WAIT_MAX_S) to keep the request open when the policy holds the "
    "answer for people to decide: the approved (or overridden and confirmed) answer then comes back as if nothing "
    "was held, with its approval grants; a rejection as 403 `job_rejected`; still undecided at the end, the 409 "
    "`approval_required` naming the job (retry with the same Idempotency-Key once decided); also at once when "
    "the server process already has ARBITER_APPROVAL_WAITS_PER_PROCESS requests waiting. With `stream: true` on "
    "chat completions the stream opens at once and carries SSE comments every ARBITER_STREAM_KEEPALIVE_S until the "
    "decision, then the released answer's chunks (grants on the last one, `arbiter_grants`) or one `error` event; "
    "the Responses API does not take it with `stream: true` (400 `wait_not_streamable`).",
)


class ChatCompletionsApi(ApiView):
    error_style = "openai"
    content_negotiation_class = EventStreamNegotiation
    required_scopes = {"POST": "jobs:write"}

    @extend_schema(
        operation_id="openai_chat_completions",
        summary="Chat Completions (OpenAI-compatible)",
        description=(
            "Any OpenAI SDK works: base URL `<arbiter>/v1`, the application key as the API key. `model` names a "
            "policy (`auto` or `arbiter/<policy>`). Task type from `x-arbiter-task-type` or `metadata.task_type` "
            "(default `general`); labels from `x-arbiter-labels` (JSON) or `metadata.labels`. The request runs "
            "as a job through the governed pipeline; the answer carries the route in `x-arbiter-*` headers. "
            "Parameters (`tool_choice`, `logprobs`, `temperature`, ...) go to the deployment that answers as far as "
            "its catalog entry takes them; the others, and those the policy decides (`store`), are named in "
            "`x-arbiter-ignored-params`. `n` must be 1.\n\n"
            "`stream: true` answers `text/event-stream`: `data: {chat.completion.chunk}` events (the role, the "
            "content in word pieces, tool calls as id/name then argument pieces, a last chunk with "
            "`finish_reason`; with `stream_options.include_usage` a usage chunk with empty `choices`), then "
            "`data: [DONE]`. Governance comes first: the job runs to its accepted answer exactly as without "
            "`stream` (same job, ledger events and headers), so the first byte waits for the whole governed job; "
            "a held, blocked or failed job answers with its JSON error and status instead, before any byte."
        ),
        parameters=[*ROUTING_HEADERS, WAIT_PARAMETER],
        request=ChatCompletionInputSerializer,
        examples=[
            OpenApiExample(
                "hello",
                request_only=True,
                value={
                    "model": "auto",
                    "messages": [{"role": "user", "content": "Classify: 'card charged twice'"}],
                    "metadata": {"task_type": "classification"},
                },
            )
        ],
        responses={
            (200, "application/json"): OpenApiResponse(
                ChatCompletionOutputSerializer,
                description="The released answer: a `chat.completion` (JSON), or with `stream: true` the same "
                "answer as server-sent `chat.completion.chunk` events ending with `data: [DONE]`.",
            ),
            (200, EVENT_STREAM): OpenApiResponse(OpenApiTypes.STR),
            **OPENAI_ERRORS,
        },
        tags=["openai"],
    )
    def post(self, request: Request) -> HttpResponseBase:
        serializer = ChatCompletionInputSerializer.for_input(request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        policy = policy_for_model(data["model"])
        task_type, labels, metadata = routing_facts(request, data.get("metadata") or {})
        wait_s = approval_wait_from(request, data, streamable=True)
        _, completion = self.governed_answer(
            request, data, policy=policy, task_type=task_type, labels=labels, metadata=metadata, **run_facts(request)
        )
        if wait_s is not None and completion.status == JobStatus.AWAITING_APPROVAL and data["stream"]:
            include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
            streamed = streamed_decision(
                application=self.application, completion=completion, timeout_s=wait_s, include_usage=include_usage
            )
            if streamed is not None:
                return streamed
        elif wait_s is not None and completion.status == JobStatus.AWAITING_APPROVAL:
            completion = decision_wait(application=self.application, completion=completion, timeout_s=wait_s)
        if not is_released(completion):
            raise _refusal(completion)  # held, blocked, failed: the JSON error, streamed or not
        headers = route_headers(completion)
        ignored = ignored_parameters(completion, caller_parameters.policy_decided(data))
        if ignored:
            headers[IGNORED_PARAMS_HEADER] = ", ".join(ignored)
        if data["stream"]:
            include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
            return event_stream_response(chat_completion(completion), include_usage=include_usage, headers=headers)
        return Response(chat_completion(completion), headers=headers)

    def governed_answer(
        self, request: Request, data: dict[str, Any], *, recorded: Callable[[Job], None] | None = None, **facts: Any
    ) -> tuple[Job, JobCompletion]:
        """Submit `data` (the chat shape: messages, tools, response_format) as one job, run it (inline or by
        a worker) and wait until it settles; the Responses face shares it. `recorded(job)` runs in the
        transaction that submits the job."""
        inline = settings.ARBITER_OPENAI_INLINE
        with sync_slot_or_refusal(request.auth):
            # Inline, the job's transactions commit back to back: seal the ledger once, after the last.
            with sealing_deferred() if inline else nullcontext():
                with transaction.atomic() if recorded else nullcontext():
                    job, created = self._submit(request, data, dispatch=not inline, **facts)
                    if recorded:
                        recorded(job)
                if inline and created:
                    job_run_inline(job)
            return job, job_wait(application=self.application, job=job, timeout_s=settings.ARBITER_OPENAI_WAIT_S)

    def _submit(self, request: Request, data: dict[str, Any], *, dispatch: bool, **facts: Any) -> tuple[Job, bool]:
        try:
            job, created = job_submit(
                application=self.application,
                actor=Actor.application(self.application.pk),
                submitted_by=self.client.owner,  # the key acts for its owner: they cannot review this job
                messages=data["messages"],
                tools=data.get("tools"),
                response_format=data.get("response_format"),
                parameters=caller_parameters.caller_parameters(data),
                idempotency_key=idempotency_key_from(request),
                implicit_idempotency=implicit_window(),
                dispatch=dispatch,
                **facts,
            )
        except IdempotencyConflict as conflict:
            raise openai_error(str(conflict), status_code=422, code="idempotency_conflict", job=conflict.job) from None
        except NoActivePolicy as missing:
            status_code = 404 if facts["policy"] and "no policy named" in str(missing) else 422
            raise openai_error(
                str(missing),
                status_code=status_code,
                code="model_not_found" if status_code == 404 else "no_active_policy",
                param="model",
            ) from None
        except RunNotFound as missing:
            raise openai_error(str(missing), status_code=404, code="run_not_found", param="x-arbiter-run-id") from None
        except RunClosed as closed:
            raise openai_error(str(closed), status_code=409, code="run_closed", param="x-arbiter-run-id") from None
        except JobError as error:
            raise openai_error(str(error), status_code=400, code="invalid_request") from None
        return job, created


class ModelsApi(ApiView):
    error_style = "openai"
    required_scopes = {"GET": "jobs:write"}

    @extend_schema(
        operation_id="openai_models",
        summary="Models (OpenAI-compatible): the policies a completion can name",
        responses={
            200: ModelListOutputSerializer,
            **{code: OPENAI_ERRORS[code] for code in (400, 401, 403, 405, 406, 429)},
        },
        tags=["openai"],
    )
    def get(self, request: Request) -> Response:
        policies = list(selectors.policies_with_active_version())
        models = [model_entry("auto", policy) for policy in policies if policy.is_default]
        models += [model_entry(f"{MODEL_PREFIX}{policy.name}", policy) for policy in policies]
        return Response({"object": "list", "data": models})
