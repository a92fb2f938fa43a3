"""`stream: true` on `POST /v1/chat/completions`: a released answer as server-sent events, in the
`chat.completion.chunk` form the OpenAI SDKs parse.

Streaming changes nothing about governance. The view runs the job to its settled outcome exactly as for a
non-streamed call (same job, same ledger events, same `x-arbiter-*` headers, the synchronous-call slot
held until then and no longer) and builds the finished `chat.completion` through the release gate; only
then does it hand that answer to `event_stream_response`. A held, blocked, failed or timed-out job never
gets here: it is answered with its JSON error and status before any byte of a stream, so the SDK raises
the same exception it would without `stream`. The first byte therefore waits for the whole governed job
(every tier the cascade tried, the scoring, the approval rules); the stream itself is only the complete
answer cut into pieces (words of content, pieces of tool-call arguments), written without delay.

The events are built from the finished completion only (no database, no slot, no lock): a slow reader
holds a web thread while the last bytes drain, never a synchronous-call slot. Model output reaches the
wire only inside `json.dumps` strings, whose escaping (newlines, U+2028, ...) keeps it from ending an
event or forging one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from django.http import StreamingHttpResponse
from rest_framework.negotiation import DefaultContentNegotiation

EVENT_STREAM = "text/event-stream"
# A word with the spaces after it (long runs cut at 64 characters), or leading spaces alone: the pieces
# concatenate back to exactly the original text.
PIECE = re.compile(r"\S{1,64}\s*|\s+")


def pieces(text: str) -> list[str]:
    return PIECE.findall(text)


def completion_chunks(completion: dict[str, Any], *, include_usage: bool) -> Iterator[dict[str, Any]]:
    """The `chat.completion.chunk` objects that reassemble, in any OpenAI SDK, to `completion`."""
    choice = completion["choices"][0]
    message = choice["message"]
    head = {key: completion[key] for key in ("id", "created", "model", "system_fingerprint")}
    head["object"] = "chat.completion.chunk"

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        body = head | {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
        return (body | {"usage": None}) if include_usage else body

    content = message.get("content")
    yield chunk({"role": "assistant", "content": None if content is None else "", "refusal": None})
    for piece in pieces(content or ""):
        yield chunk({"content": piece})
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call["function"]
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": call["type"],
                        "function": {"name": function["name"], "arguments": ""},
                    }
                ]
            }
        )
        for piece in pieces(function["arguments"]):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    last = chunk({}, choice["finish_reason"])
    # An approved tool call's grants (routing/api/GRANTS.md) ride on the last chunk, as `arbiter_grants`.
    yield last | ({"arbiter_grants": completion["arbiter_grants"]} if completion.get("arbiter_grants") else {})
    if include_usage:
        yield head | {"choices": [], "usage": completion["usage"]}


def server_sent_events(chunks: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for chunk in chunks:
        yield b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


def event_stream(events: Iterator[bytes], *, headers: dict[str, str]) -> StreamingHttpResponse:
    """`events` (server-sent events, already encoded) as a `text/event-stream` response carrying `headers`."""
    response = StreamingHttpResponse(events, content_type=f"{EVENT_STREAM}; charset=utf-8", headers=headers)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a buffering proxy in front must pass the events on as they come
    return response


def event_stream_response(
    completion: dict[str, Any], *, include_usage: bool, headers: dict[str, str]
) -> StreamingHttpResponse:
    """The released `completion` as a `text/event-stream` response carrying `headers` (the route)."""
    return event_stream(server_sent_events(completion_chunks(completion, include_usage=include_usage)), headers=headers)


class EventStreamNegotiation(DefaultContentNegotiation):
    """A client asking for `text/event-stream` (a raw SSE client; the SDKs send `application/json`) is
    served rather than refused with a 406: the stream is no DRF rendering, and any error before it is
    JSON, as OpenAI answers it."""

    def select_renderer(self, request, renderers, format_suffix=None):
        if EVENT_STREAM in request.META.get("HTTP_ACCEPT", ""):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
