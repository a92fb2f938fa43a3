"""`stream: true` on `POST /v1/responses`: a released Response as the Responses stream's documented event
sequence (server-sent events), as the OpenAI SDKs and the Agents SDK parse it.

As for a streamed chat completion (routing.api.openai_stream), governance comes first: the view runs the
job to its settled outcome and builds the Response through the release gate before this module sees it,
so a held, blocked or failed job is a JSON error before any byte. The text and the call arguments are
cut into the same pieces as a chat stream's (`openai_stream.pieces`): several deltas that concatenate to
the finished text.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

from django.http import StreamingHttpResponse

from routing.api.openai_stream import event_stream, pieces


def response_events(body: dict[str, Any]) -> Iterator[bytes]:
    """The events of a finished Response: created and in progress, each output item added, its text or
    arguments in pieces and done, the item done, the response completed (or incomplete)."""
    sequence = itertools.count()

    def event(kind: str, **fields: Any) -> bytes:
        data = json.dumps({"type": kind, "sequence_number": next(sequence), **fields}, separators=(",", ":"))
        return f"event: {kind}\ndata: {data}\n\n".encode()

    pending = {**body, "status": "in_progress", "output": [], "usage": None}
    yield event("response.created", response=pending)
    yield event("response.in_progress", response=pending)
    for index, item in enumerate(body["output"]):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            yield event(
                "response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []}
            )
            for part_index, part in enumerate(item["content"]):
                at = {**where, "content_index": part_index}
                yield event("response.content_part.added", **at, part={**part, "text": "", "logprobs": []})
                for piece in pieces(part["text"]):
                    yield event("response.output_text.delta", **at, delta=piece, logprobs=[])
                yield event("response.output_text.done", **at, text=part["text"], logprobs=part["logprobs"])
                yield event("response.content_part.done", **at, part=part)
        else:
            yield event(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            for piece in pieces(item["arguments"]):
                yield event("response.function_call_arguments.delta", **where, delta=piece)
            yield event(
                "response.function_call_arguments.done", **where, name=item["name"], arguments=item["arguments"]
            )
        yield event("response.output_item.done", output_index=index, item=item)
    yield event(f"response.{body['status']}", response=body)


def response_event_stream(body: dict[str, Any], *, headers: dict[str, str]) -> StreamingHttpResponse:
    """The released Response `body` as a `text/event-stream` response carrying `headers` (the route)."""
    return event_stream(response_events(body), headers=headers)
