"""The model server honours `tool_choice` as OpenAI documents it, through the real openai SDK."""

from __future__ import annotations

import json
import math

import openai
import pytest

TOOLS = [
    {"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}},
    {
        "type": "function",
        "function": {
            "name": "issue_refund",
            "parameters": {
                "type": "object",
                "properties": {"amount": {"type": "integer", "minimum": 5}},
                "required": ["amount"],
            },
        },
    },
]
PROMPT = "[task:general] Where is my parcel?"
MARKED = '[task:general] [call:lookup_order {"order": "A-1"}] Where is my parcel?'


def create(client: openai.OpenAI, content: str, **fields):
    return client.chat.completions.create(
        model="sim-mini", messages=[{"role": "user", "content": content}], tools=TOOLS, **fields
    )


def called(completion) -> list[str]:
    return [call.function.name for call in completion.choices[0].message.tool_calls or []]


def test_none_never_calls_a_tool_even_when_the_prompt_asks_for_one(sim_client: openai.OpenAI) -> None:
    completion = create(sim_client, MARKED, tool_choice="none")
    assert called(completion) == []
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content


def test_auto_calls_only_when_the_model_wants_to(sim_client: openai.OpenAI) -> None:
    assert called(create(sim_client, PROMPT, tool_choice="auto")) == []
    assert called(create(sim_client, MARKED, tool_choice="auto")) == ["lookup_order"]
    assert called(create(sim_client, MARKED)) == ["lookup_order"]  # auto is the default with tools


def test_required_always_calls_a_tool(sim_client: openai.OpenAI) -> None:
    completion = create(sim_client, PROMPT, tool_choice="required")
    assert called(completion) == ["lookup_order"]
    assert completion.choices[0].finish_reason == "tool_calls"


def test_a_named_function_is_called_with_arguments_that_fit_its_schema(sim_client: openai.OpenAI) -> None:
    choice = {"type": "function", "function": {"name": "issue_refund"}}
    completion = create(sim_client, PROMPT, tool_choice=choice)
    assert called(completion) == ["issue_refund"]
    assert json.loads(completion.choices[0].message.tool_calls[0].function.arguments)["amount"] >= 5
    # A prompt that wants another tool still gets the named one.
    assert called(create(sim_client, MARKED, tool_choice=choice)) == ["issue_refund"]


def test_logprobs_come_back_when_asked_with_top_alternatives(sim_client: openai.OpenAI) -> None:
    completion = sim_client.chat.completions.create(
        model="sim-nano",
        messages=[{"role": "user", "content": "[task:classification] [confidence:nano=0.8] Billing?"}],
        logprobs=True,
        top_logprobs=3,
    )
    tokens = completion.choices[0].logprobs.content
    assert "".join(token.token for token in tokens) == completion.choices[0].message.content
    assert math.exp(sum(token.logprob for token in tokens)) == pytest.approx(0.8, abs=1e-6)
    assert all(len(token.top_logprobs) == 3 for token in tokens)
    plain = sim_client.chat.completions.create(
        model="sim-nano", messages=[{"role": "user", "content": "[task:classification] Billing?"}]
    )
    assert plain.choices[0].logprobs is None

