"""Which of a caller's parameters reach a deployment (routing.decide.parameters): pure rules."""

from __future__ import annotations

from routing.decide.parameters import (
    DEFAULT_SUPPORTED,
    caller_parameters,
    for_deployment,
    from_responses,
    policy_decided,
    responses_name,
)

BASE = {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}]}


def test_a_deployment_that_takes_everything_gets_everything():
    asked = {"tool_choice": "required", "temperature": 0.2, "seed": 4, "reasoning_effort": "low"}
    forwarded = for_deployment(BASE, asked, DEFAULT_SUPPORTED)
    assert forwarded.request == {**BASE, **asked}
    assert forwarded.dropped == ()


def test_what_a_deployment_does_not_take_is_not_sent_and_is_named():
    supported = [name for name in DEFAULT_SUPPORTED if name not in ("temperature", "top_p")]
    forwarded = for_deployment(BASE, {"temperature": 0.2, "top_p": 0.5, "seed": 1}, supported)
    assert "temperature" not in forwarded.request and "top_p" not in forwarded.request
    assert forwarded.request["seed"] == 1
    assert forwarded.dropped == ("temperature", "top_p")


def test_the_policy_output_limit_caps_the_callers_under_the_callers_name():
    policy = {**BASE, "max_tokens": 100}
    assert for_deployment(policy, {"max_completion_tokens": 500}, DEFAULT_SUPPORTED).request == {
        **BASE,
        "max_completion_tokens": 100,
    }
    assert for_deployment(policy, {"max_tokens": 40}, DEFAULT_SUPPORTED).request["max_tokens"] == 40
    assert for_deployment(policy, {}, DEFAULT_SUPPORTED).request["max_tokens"] == 100
    # Both names: one limit is sent, the other named.
    both = for_deployment(BASE, {"max_completion_tokens": 30, "max_tokens": 60}, DEFAULT_SUPPORTED)
    assert both.request["max_completion_tokens"] == 30 and "max_tokens" not in both.request
    assert both.dropped == ("max_tokens",)


def test_the_policys_own_logprobs_stay_and_top_logprobs_needs_logprobs():
    with_policy = for_deployment({**BASE, "logprobs": True}, {"top_logprobs": 3}, DEFAULT_SUPPORTED)
    assert with_policy.request["logprobs"] is True and with_policy.request["top_logprobs"] == 3
    without = [name for name in DEFAULT_SUPPORTED if name != "logprobs"]
    forwarded = for_deployment(BASE, {"logprobs": True, "top_logprobs": 3}, without)
    assert "logprobs" not in forwarded.request and "top_logprobs" not in forwarded.request
    assert forwarded.dropped == ("logprobs", "top_logprobs")


def test_tool_settings_go_only_with_tools():
    request = {"messages": BASE["messages"]}
    forwarded = for_deployment(request, {"tool_choice": "auto", "parallel_tool_calls": False}, DEFAULT_SUPPORTED)
    assert forwarded.request == request


def test_nulls_are_unset_and_store_is_the_policys():
    assert caller_parameters({"temperature": None, "seed": 0, "model": "auto", "store": True}) == {"seed": 0}
    assert policy_decided({"store": False}) == ["store"]
    assert policy_decided({"store": None}) == []


def test_a_responses_request_is_translated_to_the_chat_parameters_it_means():
    chat, not_sent = from_responses(
        {
            "input": "hi",
            "tool_choice": {"type": "function", "name": "lookup"},
            "max_output_tokens": 50,
            "reasoning": {"effort": "low", "summary": "auto"},
            "text": {"format": {"type": "text"}, "verbosity": "high"},
            "temperature": 0.2,
            "store": True,
            "metadata": {"a": "b"},
            "max_tool_calls": 2,
            "top_p": None,
        }
    )
    assert chat == {
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "max_completion_tokens": 50,
        "temperature": 0.2,
        "reasoning_effort": "low",
        "verbosity": "high",
    }
    assert not_sent == ["max_tool_calls", "reasoning.summary"]


def test_responses_asks_for_logprobs_through_include_only():
    assert from_responses({"top_logprobs": 2})[0] == {"top_logprobs": 2}
    assert from_responses({"top_logprobs": 2, "include": ["message.output_text.logprobs"]})[0] == {
        "logprobs": True,
        "top_logprobs": 2,
    }


def test_a_dropped_chat_parameter_is_named_as_the_responses_caller_set_it():
    assert [responses_name(name) for name in ("max_completion_tokens", "reasoning_effort", "verbosity", "seed")] == [
        "max_output_tokens",
        "reasoning.effort",
        "text.verbosity",
        "seed",
    ]
