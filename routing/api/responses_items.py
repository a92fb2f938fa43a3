"""`GET /v1/responses/{id}/input_items`: the input a stored response was made from, as a cursor list.

The items are the call's own input, rebuilt from the job's request: the messages after its
`instructions` (which are the response's `instructions`, not input) and after the conversation a
`previous_response_id` brought in (that is the previous response's input and output, listed there).
They are what the application itself sent, so a held response lists them as any other: nothing of an
answer is among them. Newest first by default, as OpenAI documents it; `after` is an item id.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from routing.api.base import ApiView
from routing.api.openai import OPENAI_ERRORS, openai_error
from routing.api.responses import RESPONSE_ERRORS, stored_response_for, unerased
from routing.api.serializers.responses import InputItemListSerializer
from routing.models import StoredResponse


class InputItemsQuerySerializer(serializers.Serializer):
    after = serializers.CharField(required=False, max_length=200, help_text="An item id: list the items after it.")
    limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=100)
    order = serializers.ChoiceField(choices=["asc", "desc"], required=False, default="desc")


def input_items(stored: StoredResponse) -> list[dict[str, Any]]:
    """The call's input as Responses items, oldest first (ids are stable: the job and the position)."""
    messages = (stored.job.request.get("messages") or [])[stored.instruction_messages + stored.history_messages :]
    hexed = stored.job_id.hex
    items: list[dict[str, Any]] = []

    def add(prefix: str, item: dict[str, Any]) -> None:
        items.append({"id": f"{prefix}_{hexed}_in{len(items)}", **item, "status": "completed"})

    for message in messages:
        role, content = message["role"], message.get("content")
        if role == "tool":
            add("fco", {"type": "function_call_output", "call_id": message["tool_call_id"], "output": content or ""})
        elif role == "assistant":
            if content:
                text = {"type": "output_text", "text": content, "annotations": []}
                add("msg", {"type": "message", "role": "assistant", "content": [text]})
            for call in message.get("tool_calls") or []:
                function = call["function"]
                add(
                    "fc",
                    {
                        "type": "function_call",
                        "call_id": call["id"],
                        "name": function["name"],
                        "arguments": function["arguments"],
                    },
                )
        else:
            add("msg", {"type": "message", "role": role, "content": [{"type": "input_text", "text": content or ""}]})
    return items


def cursor_page(items: list[dict[str, Any]], *, limit: int, order: str, after: str | None = None) -> dict[str, Any]:
    ordered = items if order == "asc" else items[::-1]
    start = 0
    if after is not None:
        position = next((index for index, item in enumerate(ordered) if item["id"] == after), None)
        if position is None:
            raise openai_error(
                f"`after` {after[:80]!r} is not an input item of this response",
                status_code=400,
                code="invalid_cursor",
                param="after",
            )
        start = position + 1
    data = ordered[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(ordered),
    }


class ResponseInputItemsApi(ApiView):
    error_style = "openai"
    required_scopes = {"GET": "jobs:read"}

    @extend_schema(
        operation_id="openai_responses_input_items",
        summary="A stored response's input items (OpenAI-compatible)",
        description=(
            "The input this application sent for the response (not its `instructions`, not the conversation "
            "a `previous_response_id` continued), newest first unless `order=asc`; `after` an item id, `limit` "
            "1 to 100 (default 20). A held response lists its input like any other: nothing of an answer is in "
            "it. Another application's response, one not stored or deleted, is 404; an erased one 410."
        ),
        parameters=[
            InputItemsQuerySerializer,
            OpenApiParameter("include", str, OpenApiParameter.QUERY, many=True, description="Accepted, ignored."),
        ],
        responses={
            200: InputItemListSerializer,
            **{code: OPENAI_ERRORS[code] for code in (400, 401, 403, 405, 406, 429)},
            404: RESPONSE_ERRORS[404],
            410: RESPONSE_ERRORS[410],
        },
        tags=["openai"],
    )
    def get(self, request: Request, response_id: str) -> Response:
        query = InputItemsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        stored = unerased(stored_response_for(self.application, response_id))
        return Response(cursor_page(input_items(stored), **query.validated_data))
