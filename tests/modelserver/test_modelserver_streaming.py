"""`stream: true`: the same answer as without it, one content chunk per token, as the SDK parses it."""

from __future__ import annotations

import json

import openai

from modelserver import ModelServer
from modelserver.completions import tokenize
from tests.modelserver.sim_helpers import ask, confidence_of

PROMPT = "[task:classification] [confidence:nano=0.9] my card was charged twice"
TOOLS = [{"type": "function", "function": {"name": "issue_refund", "parameters": {"type": "object"}}}]


def test_a_stream_is_the_non_streamed_answer_token_by_token_then_usage(sim_client: openai.OpenAI) -> None:
    whole = ask(sim_client, "sim-nano", PROMPT, seed=3)

    chunks = list(ask(sim_client, "sim-nano", PROMPT, seed=3, stream=True, stream_options={"include_usage": True}))

    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [chunk.choices[0].delta.content for chunk in chunks[1:] if chunk.choices]
    contents = [content for content in contents if content]
    assert contents == tokenize(whole.choices[0].message.content)
    assert len(contents) > 1
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_a_stream_without_include_usage_has_no_usage_chunk(sim_client: openai.OpenAI) -> None:
    chunks = list(ask(sim_client, "sim-nano", PROMPT, stream=True))

    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)


def test_the_sdk_stream_helper_accumulates_tool_calls_and_logprobs(sim_client: openai.OpenAI) -> None:
    prompt = '[call:issue_refund {"amount": 150, "currency": "EUR"}] refund order 12'
    whole = ask(sim_client, "sim-mini", prompt, tools=TOOLS, logprobs=True)

    with sim_client.chat.completions.stream(
        model="sim-mini", messages=[{"role": "user", "content": prompt}], tools=TOOLS, logprobs=True
    ) as stream:
        final = stream.get_final_completion()

    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "issue_refund"
    assert json.loads(call.function.arguments) == {"amount": 150, "currency": "EUR"}
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.choices[0].message.content == whole.choices[0].message.content
    assert confidence_of(final) == confidence_of(whole)


def test_a_stream_is_chunked_and_keeps_the_connection_open(sim_server: ModelServer) -> None:
    import http.client

    connection = http.client.HTTPConnection(sim_server.host, sim_server.port, timeout=5)
    body = json.dumps({"model": "sim-nano", "messages": [{"role": "user", "content": PROMPT}], "stream": True})
    try:
        for _ in range(2):  # the second request reuses the connection
            connection.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            text = response.read().decode()
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            assert response.headers["Transfer-Encoding"] == "chunked"
            assert text.endswith("data: [DONE]\n\n")
    finally:
        connection.close()


def test_token_ms_paces_exactly_the_generated_chunks(sim_client: openai.OpenAI) -> None:
    """`token_ms` waits before each generated chunk of a stream and `generated_pieces x token_ms` before a
    non-streamed answer: the two counts must be the same number for the same body."""
    from modelserver.streaming import completion_chunks, generated_pieces

    prompt = '[call:issue_refund {"amount": 150}] refund order 12'
    body = ask(sim_client, "sim-mini", prompt, tools=TOOLS).model_dump()

    paced = [chunk for generated, chunk in completion_chunks(body, include_usage=True) if generated]

    assert len(paced) == generated_pieces(body) > 2
