"""``stream: true``: a finished completion body as the ``chat.completion.chunk`` events the OpenAI SDKs parse.

One content chunk per token (``completions.tokenize``), so a stream has as many content chunks as the answer
has tokens; a tool call is one chunk with its id and name, then its arguments token by token. The role chunk
comes first, the ``finish_reason`` chunk last, then with ``stream_options.include_usage`` a usage chunk with
no choices (every earlier chunk carries ``"usage": null``), then ``data: [DONE]``.

The fault knob ``token_ms`` paces generation: each generated piece (a content token or a piece of tool-call
arguments) takes that long. A stream waits it before each such chunk; a non-streamed reply waits
``generated_pieces x token_ms`` before answering, so both take the same time to their last byte and only a
stream shows its first tokens early.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from modelserver.completions import tokenize


def generated_pieces(body: dict[str, Any]) -> int:
    """How many chunks of generated text a stream of ``body`` has (what ``token_ms`` paces)."""
    message = body["choices"][0]["message"]
    arguments = [call["function"]["arguments"] for call in message.get("tool_calls") or []]
    return len(tokenize(message.get("content") or "")) + sum(len(tokenize(text)) for text in arguments)


def completion_chunks(body: dict[str, Any], *, include_usage: bool) -> Iterator[tuple[bool, dict[str, Any]]]:
    """(generated?, chunk) for each chunk of the stream of ``body``: generated chunks are the paced ones."""
    choice = body["choices"][0]
    message = choice["message"]
    head = {key: body[key] for key in ("id", "created", "model", "system_fingerprint")}
    head["object"] = "chat.completion.chunk"
    logprobs = (choice.get("logprobs") or {}).get("content") or []

    def chunk(delta: dict[str, Any], *, finish_reason: str | None = None, logprob: Any = None) -> dict[str, Any]:
        entry = {"index": 0, "delta": delta, "logprobs": logprob, "finish_reason": finish_reason}
        return head | {"choices": [entry]} | ({"usage": None} if include_usage else {})

    yield False, chunk({"role": "assistant", "content": "", "refusal": None})
    for index, token in enumerate(tokenize(message.get("content") or "")):
        logprob = {"content": [logprobs[index]], "refusal": None} if index < len(logprobs) else None
        yield True, chunk({"content": token}, logprob=logprob)
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call["function"]
        opening = {"index": index, "id": call["id"], "type": "function",
                   "function": {"name": function["name"], "arguments": ""}}
        yield False, chunk({"tool_calls": [opening]})
        for piece in tokenize(function["arguments"]):
            yield True, chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield False, chunk({}, finish_reason=choice["finish_reason"])
    if include_usage:
        yield False, head | {"choices": [], "usage": body["usage"]}


def event(chunk: dict[str, Any] | None) -> bytes:
    """One server-sent event; ``None`` is the closing ``[DONE]``."""
    data = b"[DONE]" if chunk is None else json.dumps(chunk, separators=(",", ":")).encode()
    return b"data: " + data + b"\n\n"


def http_chunk(data: bytes) -> bytes:
    """``data`` framed for ``Transfer-Encoding: chunked`` (empty: the last chunk)."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"
