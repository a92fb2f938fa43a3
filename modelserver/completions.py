"""Building OpenAI-shaped chat completion bodies from a backend's reply.

Confidence travels in ``logprobs`` by one convention (see the package docstring): the FIRST content
token carries ``log(confidence)`` and every later token ``0.0``, so ``exp(sum of logprobs)`` gives the
confidence back to ~1e-12. A reply without a confidence gets ``logprobs: null`` rather than a made-up
number, since ``0.0`` everywhere would claim certainty.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from modelserver.protocol import ChatRequest

# log(0) is not a number JSON can carry; a confidence this small reads back as 0 to 6 decimals.
MIN_CONFIDENCE = 1e-12
# What OpenAI reports for an alternative with no probability mass left.
NEGLIGIBLE_LOGPROB = -9999.0
_TOKEN = re.compile(r"\s*\S+|\s+")
_ALTERNATIVES = (" other", " none", " unknown", " maybe", " not", " perhaps", " yes", " no")


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str


@dataclass(frozen=True)
class Reply:
    """What a backend answers, before it is dressed in the protocol."""

    content: str | None
    confidence: float | None
    tool_call: ToolCall | None = None
    prompt_tokens: int = 1
    completion_tokens: int | None = None
    latency_s: float = 0.0


def tokenize(text: str) -> list[str]:
    """Word-sized tokens with their leading whitespace, like a BPE tokenizer; they join back to ``text``."""
    return _TOKEN.findall(text)


def completion_body(request: ChatRequest, reply: Reply, *, fingerprint: str) -> dict[str, Any]:
    tokens = tokenize(reply.content) if reply.content is not None else []
    finish_reason = "tool_calls" if reply.tool_call else "stop"
    content = reply.content
    completion_tokens = reply.completion_tokens if reply.completion_tokens is not None else len(tokens)
    if request.max_tokens is not None and len(tokens) > request.max_tokens:
        tokens = tokens[: request.max_tokens]
        content = "".join(tokens)
        finish_reason = "length"
        completion_tokens = len(tokens)
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if reply.tool_call:
        message["tool_calls"] = [
            {
                "id": f"call_{secrets.token_hex(12)}",
                "type": "function",
                "function": {"name": reply.tool_call.name, "arguments": reply.tool_call.arguments},
            }
        ]
    logprobs = None
    if request.logprobs and tokens and reply.confidence is not None:
        logprobs = {
            "content": logprob_content(tokens, reply.confidence, request.top_logprobs),
            "refusal": None,
        }
    return {
        "id": f"chatcmpl-{secrets.token_hex(14)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "system_fingerprint": fingerprint,
        "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": reply.prompt_tokens + completion_tokens,
        },
    }


def logprob_content(tokens: list[str], confidence: float, top_n: int) -> list[dict[str, Any]]:
    first = math.log(min(1.0, max(confidence, MIN_CONFIDENCE)))
    return [
        {
            "token": token,
            "logprob": first if index == 0 else 0.0,
            "bytes": list(token.encode()),
            "top_logprobs": _top_logprobs(token, first if index == 0 else 0.0, top_n),
        }
        for index, token in enumerate(tokens)
    ]


def _top_logprobs(token: str, logprob: float, top_n: int) -> list[dict[str, Any]]:
    """The chosen token plus alternatives that share the remaining mass, halving down the list.

    The alternatives' probabilities sum to less than ``1 - p(token)``, so the distribution stays proper.
    """
    if top_n == 0:
        return []
    remaining = -math.expm1(logprob)
    alternatives = [alt for alt in _ALTERNATIVES if alt != token][: top_n - 1]
    entries = [(token, logprob)]
    for rank, alternative in enumerate(alternatives, start=1):
        mass = remaining * 0.5**rank
        entries.append((alternative, math.log(mass) if mass > 0 else NEGLIGIBLE_LOGPROB))
    entries.sort(key=lambda entry: entry[1], reverse=True)
    return [{"token": tok, "logprob": lp, "bytes": list(tok.encode())} for tok, lp in entries]
