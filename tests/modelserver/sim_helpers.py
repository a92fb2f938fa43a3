"""Helpers shared by the model server tests (imported by name: this test folder is on sys.path)."""

from __future__ import annotations

import http.client
import json
import math
from typing import Any

import openai

from modelserver import ModelServer


def ask(client: openai.OpenAI, model: str, content: str, **options: Any) -> Any:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], **options
    )


def confidence_of(completion: Any) -> float:
    """What Arbiter's logprob estimator computes: the probability mass of the answer tokens."""
    return math.exp(sum(token.logprob for token in completion.choices[0].logprobs.content))


def answer_of(completion: Any) -> str:
    content = completion.choices[0].message.content
    return next(line for line in content.splitlines() if line.startswith("answer: ")).removeprefix("answer: ")


def raw_request(
    server: ModelServer, method: str, path: str, body: bytes | None = None
) -> tuple[int, http.client.HTTPMessage, Any]:
    """Plain HTTP, for bodies the SDK would never send."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read())
    finally:
        connection.close()
