"""Synthetic chat completions through the real openai SDK: shape, usage, logprobs, tools, JSON output."""

from __future__ import annotations

import json
import time

import jsonschema
import openai
import pytest

from modelserver import ModelServer
from routing.decide.tiers import TASK_TYPES
from tests.modelserver.sim_helpers import answer_of, ask, confidence_of, raw_request


def test_it_answers_with_usage_ids_and_a_request_id(sim_client: openai.OpenAI) -> None:
    content = "[task:classification] " + "Classify this ticket about a double charge. " * 9
    response = sim_client.chat.completions.with_raw_response.create(
        model="sim-nano", messages=[{"role": "user", "content": content}]
    )
    completion = response.parse()

    assert response.headers["x-request-id"].startswith("req_")
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "sim-nano"
    assert completion.system_fingerprint
    assert completion.created > 0
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content.startswith("label: ")
    assert answer_of(completion) in choice.message.content
    assert completion.usage.prompt_tokens == pytest.approx(len(content) / 4, abs=1)
    assert completion.usage.completion_tokens > 0
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_it_answers_every_task_type_with_an_answer_line(sim_client: openai.OpenAI, task_type: str) -> None:
    completion = ask(sim_client, "sim-mini", f"[task:{task_type}] Do the thing.")

    assert answer_of(completion)


def test_it_serves_a_same_tier_deployment_under_its_own_id(sim_client: openai.OpenAI) -> None:
    prompt = "[task:extraction] Extract the invoice number from document 7."
    primary, fallback = ask(sim_client, "sim-nano", prompt), ask(sim_client, "sim-nano-b", prompt)

    assert fallback.model == "sim-nano-b"
    assert fallback.choices[0].message.content == primary.choices[0].message.content


def test_it_carries_a_forced_confidence_exactly_in_logprobs(sim_client: openai.OpenAI) -> None:
    prompt = "[task:classification] [confidence:nano=0.95,mini=0.3] Classify ticket 12."
    nano = ask(sim_client, "sim-nano", prompt, logprobs=True, top_logprobs=3)
    mini = ask(sim_client, "sim-mini", prompt, logprobs=True)

    assert confidence_of(nano) == pytest.approx(0.95, abs=1e-9)
    assert confidence_of(mini) == pytest.approx(0.3, abs=1e-9)
    # Correct answers agree across tiers, a wrong one (confidence under 0.5) does not.
    assert answer_of(nano) != answer_of(mini)
    tokens = nano.choices[0].logprobs.content
    assert "".join(token.token for token in tokens) == nano.choices[0].message.content
    assert nano.usage.completion_tokens == len(tokens)
    first = tokens[0]
    assert first.bytes == list(first.token.encode())
    assert len(first.top_logprobs) == 3
    assert first.top_logprobs[0].token == first.token
    assert sum(2.718281828459045**alt.logprob for alt in first.top_logprobs) <= 1.0 + 1e-9


def test_it_leaves_logprobs_out_unless_asked(sim_client: openai.OpenAI) -> None:
    completion = ask(sim_client, "sim-flagship", "[task:planning] Plan the move.")

    assert completion.choices[0].logprobs is None


def test_it_calls_the_tool_named_by_a_marker_even_when_not_offered(sim_client: openai.OpenAI) -> None:
    offered = [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}]
    completion = ask(
        sim_client,
        "sim-nano",
        'Customer wants money back. [call:issue_refund {"amount": 150, "note": "a]b"}]',
        tools=offered,
        logprobs=True,
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_")
    assert call.function.name == "issue_refund"
    assert json.loads(call.function.arguments) == {"amount": 150, "note": "a]b"}
    assert 0 < confidence_of(completion) <= 1


def test_it_ignores_the_call_marker_without_tools_or_after_a_tool_result(sim_client: openai.OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "issue_refund"}}]
    prompt = "Refund it. [call:issue_refund]"
    without_tools = ask(sim_client, "sim-nano", prompt)
    after_result = sim_client.chat.completions.create(
        model="sim-nano",
        tools=tools,
        messages=[
            {"role": "user", "content": prompt},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "issue_refund", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "refunded"},
        ],
    )
    declined = ask(sim_client, "sim-nano", prompt, tools=tools, tool_choice="none")

    for completion in (without_tools, after_result, declined):
        assert completion.choices[0].finish_reason == "stop"
        assert completion.choices[0].message.tool_calls is None


def test_it_fills_a_forced_tool_choice_with_valid_arguments(sim_client: openai.OpenAI) -> None:
    parameters = {
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "minLength": 6},
            "quantity": {"type": "integer", "minimum": 1, "maximum": 5},
        },
        "required": ["order_id", "quantity"],
        "additionalProperties": False,
    }
    tools = [{"type": "function", "function": {"name": "reorder", "parameters": parameters}}]

    completion = ask(
        sim_client,
        "sim-mini",
        "Order again.",
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "reorder"}},
    )

    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "reorder"
    jsonschema.validate(json.loads(call.function.arguments), parameters)


ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "severity": {"enum": ["low", "high"]},
        "evidence": {"type": "array", "items": {"type": "string"}, "minItems": 2, "uniqueItems": True},
        "location": {"$ref": "#/$defs/location"},
        "score": {"type": "integer", "exclusiveMinimum": 10, "multipleOf": 3},
    },
    "required": ["answer", "confidence", "severity", "evidence", "location", "score"],
    "additionalProperties": False,
    "$defs": {
        "location": {
            "type": "object",
            "properties": {"line": {"type": "integer", "minimum": 1}, "file": {"type": ["string", "null"]}},
            "required": ["line", "file"],
            "additionalProperties": False,
        }
    },
}


def test_it_answers_a_json_schema_with_a_valid_instance_and_its_own_confidence(
    sim_client: openai.OpenAI,
) -> None:
    completion = ask(
        sim_client,
        "sim-flagship",
        "[task:code_review] Review this diff.",
        logprobs=True,
        response_format={"type": "json_schema", "json_schema": {"name": "review", "schema": ANSWER_SCHEMA}},
    )

    document = json.loads(completion.choices[0].message.content)
    jsonschema.validate(document, ANSWER_SCHEMA)
    assert document["answer"].startswith("line ")
    assert document["confidence"] == pytest.approx(confidence_of(completion), abs=1e-9)


def test_it_answers_json_object_mode_and_breaks_it_on_request(sim_client: openai.OpenAI) -> None:
    json_mode = {"type": "json_object"}
    valid = ask(sim_client, "sim-nano", "[task:ranking] Rank these.", response_format=json_mode)
    broken = ask(
        sim_client, "sim-nano", "[task:ranking] Rank these. [invalid_json]", response_format=json_mode
    )

    assert set(json.loads(valid.choices[0].message.content)) == {"answer", "confidence"}
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.choices[0].message.content)


def test_it_stops_at_max_tokens(sim_client: openai.OpenAI) -> None:
    completion = ask(sim_client, "sim-nano", "[task:reasoning] How many?", max_tokens=2)

    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 2


def test_it_is_deterministic_for_seed_tier_and_messages(sim_client: openai.OpenAI) -> None:
    prompts = [f"[task:reasoning] Solve word problem {n}." for n in range(20)]

    def outcomes(client: openai.OpenAI, **options: object) -> list[tuple[str, float]]:
        completions = [ask(client, "sim-mini", p, logprobs=True, **options) for p in prompts]
        return [(c.choices[0].message.content, confidence_of(c)) for c in completions]

    first = outcomes(sim_client)
    assert outcomes(sim_client) == first
    assert outcomes(sim_client, seed=1) == outcomes(sim_client, seed=1)
    assert outcomes(sim_client, seed=1) != outcomes(sim_client, seed=2)
    with ModelServer(seed=1, latency_scale=0) as other:
        other_client = openai.OpenAI(base_url=other.base_url, api_key="x", max_retries=0)
        assert outcomes(other_client) != first


def test_it_lists_its_models_and_reports_health(sim_server: ModelServer, sim_client: openai.OpenAI) -> None:
    listed = [model.id for model in sim_client.models.list()]
    status, _, health = raw_request(sim_server, "GET", "/healthz")

    assert listed == ["sim-nano", "sim-mini", "sim-flagship"]
    assert sim_client.models.retrieve("sim-mini-eu").id == "sim-mini-eu"
    assert (status, health) == (200, {"status": "ok", "mode": "synthetic", "models": listed})


def test_it_waits_the_simulated_latency() -> None:
    with ModelServer(latency_scale=0.5) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        started = time.perf_counter()
        ask(client, "sim-nano", "[task:classification] Classify.")
        elapsed = time.perf_counter() - started

    # nano: 60 ms base + 3 ms per token, halved.
    assert 0.03 <= elapsed < 0.5
