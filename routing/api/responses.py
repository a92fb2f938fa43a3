"""The OpenAI Responses API: `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}` (the input
items are listed by routing.api.responses_items, the stream written by routing.api.responses_stream).

A response is one governed job, submitted and run exactly as a chat completion is (the same
`governed_answer`: job_submit, the pipeline, the wait): the Responses input is translated into the chat
request the pipeline understands (routing.api.serializers.responses), and the accepted answer back into a
Response object — built from the chat completion the release gate lets out, so a held, blocked or
rejected answer is never in it. A held job answers with the same error as a chat completion.

The response's id is the job's (`resp_<job id in hex>`) and nothing of its content is stored twice: the
conversation is the job's request, the answer its released result, and a `StoredResponse` row keeps only
the call's shape (store, previous response, how many leading messages are instructions and how many
the continued conversation, tool_choice, when it was deleted). The model parameters are the job's, under
their chat names (routing.decide.parameters), and read back under the Responses ones.
`GET` of a stored response the application owns shows its status at any time and its output only once
released (a held one is `in_progress` with no output, as the jobs API withholds the result); another
application's, an unstored or deleted one, a chat completion's job are all 404; an erased one is a 410
naming erasure, never a half-empty response. `DELETE` removes the application's handle, not the record
(routing.services.responses).
"""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from audit.ledger import Actor
from routing import selectors
from routing.api.base import ApiView
from routing.api.errors import Problem
from routing.api.openai import (
    IGNORED_PARAMS_HEADER,
    MODEL_PREFIX,
    OPENAI_ERRORS,
    ROUTING_HEADERS,
    WAIT_PARAMETER,
    ChatCompletionsApi,
    _refusal,
    approval_wait_from,
    chat_completion,
    decision_wait,
    ignored_parameters,
    openai_error,
    policy_for_model,
    released_grants,
    route_headers,
    routing_facts,
    run_facts,
)
from routing.api.responses_stream import response_event_stream
from routing.api.schema import OpenAIErrorSerializer
from routing.api.serializers.responses import (
    RESPONSE_ID,
    ResponseCreateInputSerializer,
    ResponseDeletedSerializer,
    ResponseOutputSerializer,
    responses_text,
    responses_tools,
)
from routing.decide.parameters import responses_name
from routing.models import Application, Job, JobStatus, StoredResponse
from routing.models.jobs import JobPurpose
from routing.release import is_released, released_status_reason, result_withheld
from routing.selectors import JobCompletion
from routing.services.responses import stored_response_delete

# A Response's status for a job that has no released answer (yet, or ever).
STATUS_BY_JOB_STATUS: dict[str, str] = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "in_progress",
    JobStatus.AWAITING_APPROVAL: "in_progress",
    JobStatus.CANCELLED: "cancelled",
}


def response_id(job_id: uuid.UUID) -> str:
    return f"resp_{job_id.hex}"


def not_found(value: str, *, param: str | None = None) -> Problem:
    return openai_error(
        f"no response with id {value[:80]!r} (responses are kept only with `store: true`, for the application "
        "that made them)",
        status_code=404,
        code="response_not_found",
        param=param,
    )


def stored_response_for(application: Application, value: str, *, param: str | None = None) -> StoredResponse:
    """The application's own stored response by its id, else 404 (never a hint whose it is): not stored,
    deleted, another application's and a chat completion's job are all the same 404."""
    match = RESPONSE_ID.fullmatch(value)
    found = (
        StoredResponse.objects.select_related("job")
        .filter(
            job_id=uuid.UUID(match.group(1)),
            store=True,
            deleted_at=None,
            job__application=application,
            job__purpose=JobPurpose.APPLICATION,
        )
        .first()
        if match
        else None
    )
    if found is None:
        raise not_found(value, param=param)
    return found


def unerased(stored: StoredResponse, *, param: str | None = None) -> StoredResponse:
    """The stored response, unless its job was erased: then a 410 naming erasure (its conversation and
    answer are gone; the job's record of what happened stays)."""
    erased_at = stored.job.erased_at
    if erased_at is None:
        return stored
    continuing = param == "previous_response_id"
    raise openai_error(
        f"response {response_id(stored.job_id)} was erased on {erased_at:%Y-%m-%d}"
        + ("; there is nothing left to continue" if continuing else "; its input and output are gone"),
        status_code=410,
        code="previous_response_erased" if continuing else "response_erased",
        param=param,
    )


def answer_message(completion: JobCompletion) -> dict[str, Any]:
    """The released answer as the assistant chat message a continuation is sent."""
    message = chat_completion(completion)["choices"][0]["message"]
    kept = {"role": "assistant", "content": message["content"]}
    if message.get("tool_calls"):
        kept["tool_calls"] = message["tool_calls"]
    elif kept["content"] is None:
        kept["content"] = ""
    return kept


def continued_messages(application: Application, previous: StoredResponse) -> list[dict[str, Any]]:
    """The previous response's conversation (its instructions left out: they do not carry over) and its
    released answer. An answer not released cannot be continued: nothing of it reaches the model either."""
    job = unerased(previous, param="previous_response_id").job
    completion = selectors.job_completion_for_application(application=application, job_id=job.pk)
    if completion is None or not is_released(completion):
        withheld = result_withheld(completion) if completion is not None else "not_found"
        raise openai_error(
            f"response {response_id(job.pk)} has no released answer to continue from ({withheld})",
            status_code=409,
            code="previous_response_not_released",
            param="previous_response_id",
        )
    return [*job.request["messages"][previous.instruction_messages :], answer_message(completion)]


def output_items(completion: JobCompletion) -> tuple[list[dict[str, Any]], dict[str, Any], str, str]:
    """(output items, usage, model, finish reason) of a released answer, from its chat completion."""
    chat = chat_completion(completion)
    choice = chat["choices"][0]
    message = choice["message"]
    hexed = completion.id.hex
    items: list[dict[str, Any]] = []
    if message["content"]:
        items.append(
            {
                "type": "message",
                "id": f"msg_{hexed}",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": message["content"],
                        "annotations": [],
                        # Only when the caller asked (`include`): the policy's own are never shown.
                        "logprobs": (choice.get("logprobs") or {}).get("content") or [],
                    }
                ],
            }
        )
    for index, call in enumerate(message.get("tool_calls") or []):
        items.append(
            {
                "type": "function_call",
                "id": f"fc_{hexed}_{index}",
                "status": "completed",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
            }
        )
    usage = chat["usage"]
    return (
        items,
        {
            "input_tokens": usage["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage["total_tokens"],
        },
        chat["model"],
        choice["finish_reason"],
    )


def response_object(stored: StoredResponse, job: Job, completion: JobCompletion) -> dict[str, Any]:
    """The Response: its output only from a released answer (the release gate), else its status alone."""
    messages = job.request.get("messages") or []
    instructions = messages[0]["content"] if stored.instruction_messages and messages else None
    asked = job.request.get("parameters") or {}
    body: dict[str, Any] = {
        "id": response_id(job.pk),
        "object": "response",
        "created_at": int(completion.created_at.timestamp()),
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": instructions,
        "model": f"{MODEL_PREFIX}{completion.policy_name}",
        "output": [],
        "max_output_tokens": asked.get("max_completion_tokens"),
        "parallel_tool_calls": asked.get("parallel_tool_calls", True),
        "previous_response_id": response_id(stored.previous_id) if stored.previous_id else None,
        "reasoning": {"effort": asked.get("reasoning_effort"), "summary": None},
        "store": stored.store,
        "temperature": asked.get("temperature"),
        "text": responses_text(job.request.get("response_format"), verbosity=asked.get("verbosity")),
        "tool_choice": stored.tool_choice if stored.tool_choice is not None else "auto",
        "tools": responses_tools(job.request.get("tools")),
        "top_p": asked.get("top_p"),
        "top_logprobs": asked.get("top_logprobs"),
        "service_tier": asked.get("service_tier"),
        "prompt_cache_key": asked.get("prompt_cache_key"),
        "safety_identifier": asked.get("safety_identifier"),
        "user": asked.get("user"),
        "truncation": "disabled",
        "usage": None,
        "metadata": job.metadata,
        "arbiter": {
            "job_id": str(job.pk),
            "job_url": f"/api/v1/jobs/{job.pk}",
            "job_status": completion.status,
            "result_withheld": result_withheld(completion),
            "grants": released_grants(completion),
        },
    }
    if is_released(completion):
        body["output"], body["usage"], body["model"], finish_reason = output_items(completion)
        if finish_reason == "length":
            body["status"] = "incomplete"
            body["incomplete_details"] = {"reason": "max_output_tokens"}
    elif completion.status in STATUS_BY_JOB_STATUS:
        body["status"] = STATUS_BY_JOB_STATUS[completion.status]
    else:
        body["status"] = "failed"
        body["error"] = {"code": _refusal(completion).problem_code, "message": released_status_reason(completion)}
    return body


RESPONSE_ERRORS = {
    **OPENAI_ERRORS,
    404: OpenApiResponse(
        OpenAIErrorSerializer,
        description="`model_not_found`, or `response_not_found`: `previous_response_id` names no stored response "
        "of this application.",
    ),
    409: OpenApiResponse(
        OpenAIErrorSerializer,
        description="`approval_required`: the job is held for a human (GET the response later); or it expired or "
        "was cancelled; or `previous_response_not_released`.",
    ),
    410: OpenApiResponse(
        OpenAIErrorSerializer,
        description="`response_erased` (or `previous_response_erased`): the response's job was erased "
        "(a data-protection erasure); its input and output are gone.",
    ),
}


class ResponsesApi(ChatCompletionsApi):
    """`POST /v1/responses`: one governed job, answered as a Response (shares the chat face's submit and wait)."""

    required_scopes = {"POST": "jobs:write"}

    @extend_schema(
        operation_id="openai_responses_create",
        summary="Responses (OpenAI-compatible)",
        description=(
            "The OpenAI Responses API over the governed pipeline: `input` (text, or message, `function_call` and "
            "`function_call_output` items), `instructions`, function `tools`, `text.format` (json_schema), "
            "`previous_response_id` (a stored response of this application: its conversation and released "
            "answer come first; its instructions do not carry over), `store` (default true), `metadata`. `model` "
            "names a policy (`auto` or `arbiter/<policy>`). The request runs as one job; the route is in "
            "`x-arbiter-*` headers, and a held or blocked job is the same error as a chat completion's. "
            "The model parameters (`tool_choice`, `parallel_tool_calls`, `max_output_tokens`, `temperature`, `top_p`, "
            "`reasoning.effort`, ...) go to the deployment as a chat completion's do (`x-arbiter-ignored-params` names "
            "what it does not take). "
            "With `stream: true` the governed answer is streamed as the documented event sequence once it is "
            "released; a held or blocked job is the same JSON error, before any byte of a stream."
        ),
        parameters=[*ROUTING_HEADERS, WAIT_PARAMETER],
        request=ResponseCreateInputSerializer,
        examples=[
            OpenApiExample(
                "hello",
                request_only=True,
                value={
                    "model": "auto",
                    "instructions": "Answer with the queue's name.",
                    "input": "Classify: 'card charged twice'",
                    "metadata": {"task_type": "classification"},
                },
            )
        ],
        responses={200: ResponseOutputSerializer, **RESPONSE_ERRORS},
        tags=["openai"],
    )
    def post(self, request: Request) -> Response:
        serializer = ResponseCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if data.get("background"):
            raise openai_error(
                "background responses are not supported: the call waits for the governed job (a held one "
                "answers 409 and can be read back with GET /v1/responses/{id})",
                status_code=400,
                code="background_unsupported",
                param="background",
            )
        policy = policy_for_model(data["model"])
        task_type, labels, metadata = routing_facts(request, data.get("metadata") or {})
        wait_s = approval_wait_from(request, data)
        previous = (
            stored_response_for(self.application, data["previous_response_id"], param="previous_response_id")
            if data.get("previous_response_id")
            else None
        )
        instructions = [{"role": "system", "content": data["instructions"]}] if data.get("instructions") else []
        history = continued_messages(self.application, previous) if previous else []
        chat = {
            "messages": [*instructions, *history, *data["messages"]],
            "tools": data["chat_tools"],
            "response_format": data["response_format"],
            **data["chat_parameters"],  # forwarded as a chat completion's are (routing.decide.parameters)
        }
        store = data["store"] is not False

        def recorded(job: Job) -> None:
            StoredResponse.objects.get_or_create(
                job=job,
                defaults={
                    "store": store,
                    "previous": previous,
                    "instruction_messages": len(instructions),
                    "history_messages": len(history),
                    "tool_choice": data.get("tool_choice"),
                },
            )

        job, completion = self.governed_answer(
            request,
            chat,
            recorded=recorded,
            policy=policy,
            task_type=task_type,
            labels=labels,
            metadata=metadata,
            **run_facts(request),
        )
        if wait_s is not None and completion.status == JobStatus.AWAITING_APPROVAL:
            completion = decision_wait(application=self.application, completion=completion, timeout_s=wait_s)
        if not is_released(completion):
            raise _refusal(completion)
        stored = StoredResponse.objects.get(job=job)
        body = response_object(stored, job, completion)
        headers = route_headers(completion)
        ignored = [responses_name(name) for name in ignored_parameters(completion, data["parameters_not_sent"])]
        if ignored:
            headers[IGNORED_PARAMS_HEADER] = ", ".join(sorted(ignored))
        if data["stream"]:
            # Only a released answer gets here: everything above has already refused a held one, before any
            # byte of the stream.
            return response_event_stream(body, headers=headers)
        return Response(body, headers=headers)


class ResponseApi(ApiView):
    error_style = "openai"
    required_scopes = {"GET": "jobs:read", "DELETE": "jobs:write"}

    @extend_schema(
        operation_id="openai_responses_retrieve",
        summary="A stored response (OpenAI-compatible)",
        description=(
            "A response this application made with `store: true`. Its status at any time; its output only once "
            "the job's answer is released (a held one is `in_progress` with no output; a blocked or rejected one "
            "`failed`). Another application's response, one not stored or deleted, is 404; an erased one 410."
        ),
        responses={
            200: ResponseOutputSerializer,
            **{code: OPENAI_ERRORS[code] for code in (401, 403, 405, 406, 429)},
            404: RESPONSE_ERRORS[404],
            410: RESPONSE_ERRORS[410],
        },
        tags=["openai"],
    )
    def get(self, request: Request, response_id: str) -> Response:
        stored = unerased(stored_response_for(self.application, response_id))
        completion = selectors.job_completion_for_application(application=self.application, job_id=stored.job_id)
        if completion is None:
            raise not_found(response_id)
        headers = route_headers(completion) if is_released(completion) else {"x-arbiter-job-id": str(completion.id)}
        return Response(response_object(stored, stored.job, completion), headers=headers)

    @extend_schema(
        operation_id="openai_responses_delete",
        summary="Delete a stored response (OpenAI-compatible)",
        description=(
            "Removes this application's handle on the response: it can no longer be read back, listed or "
            "continued with `previous_response_id`. The job and its ledger are the record and stay (a "
            "`response.deleted` event is added); a held job stays held for its reviewers. Another "
            "application's response, one not stored or already deleted, is 404."
        ),
        responses={
            200: ResponseDeletedSerializer,
            **{code: OPENAI_ERRORS[code] for code in (401, 403, 405, 406, 429)},
            404: RESPONSE_ERRORS[404],
        },
        tags=["openai"],
    )
    def delete(self, request: Request, response_id: str) -> Response:
        stored = stored_response_for(self.application, response_id)
        if not stored_response_delete(stored=stored, actor=Actor.application(self.application.pk)):
            raise not_found(response_id)
        return Response({"id": response_id, "object": "response", "deleted": True})
