"""The adapter sends a prepared body through the SDK's client (routing.execute.providers._create) instead of
`chat.completions.create`: what goes over the wire must be what `create` would have sent."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest

from routing.execute.providers import _create

RICH = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Billing or tech?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": "auto",
    "max_tokens": 64,
    "logprobs": True,
    "top_logprobs": 2,
    "temperature": 0.2,
    "stop": ["\n"],
    "response_format": {"type": "json_object"},
    "user": "u-1",
}
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "billing"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def sent_by(call) -> tuple[httpx2.Request, object]:
    seen: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=ANSWER, headers={"x-request-id": "req-1"})

    client = openai.OpenAI(
        base_url="http://provider.test/v1",
        api_key="k",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )
    raw = call(client)
    return seen[0], raw


@pytest.mark.parametrize("timeout_s", [None, 2.5])
def test_it_sends_what_the_sdks_create_sends(timeout_s):
    ours, ours_raw = sent_by(lambda client: _create(client, "m", RICH, timeout_s))
    sdks, sdks_raw = sent_by(
        lambda client: client.chat.completions.with_raw_response.create(
            model="m", timeout=timeout_s if timeout_s else openai.NOT_GIVEN, **RICH
        )
    )
    assert (ours.method, str(ours.url)) == (sdks.method, str(sdks.url))
    assert json.loads(ours.content) == json.loads(sdks.content)
    skip = {"x-stainless-retry-count", "content-length"}
    assert {k: v for k, v in ours.headers.items() if k not in skip} == {
        k: v for k, v in sdks.headers.items() if k not in skip
    }
    assert ours.extensions.get("timeout") == sdks.extensions.get("timeout")
    assert ours_raw.parse() == sdks_raw.parse()
    assert ours_raw.headers["x-request-id"] == "req-1"


def test_it_refuses_a_field_that_create_does_not_take():
    with pytest.raises(TypeError):
        _create(openai.OpenAI(base_url="http://provider.test/v1", api_key="k"), "m", {"messages": [], "bogus": 1}, None)
