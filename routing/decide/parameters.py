"""The Chat Completions parameters a caller may set, and which of them reach a deployment.

A caller's parameters are kept with the job (`request["parameters"]`) and sent, on every call of the
job's cascade, to the deployment answering it, as far as that deployment supports them (its catalog
entry's `parameters`). What a deployment does not support is dropped, never sent, and named back to the
caller (`x-arbiter-ignored-params`). Arbiter's own settings come first: the policy's output limit caps a
caller's `max_tokens`/`max_completion_tokens`, and the policy's own `logprobs` (for confidence) stays on.

What the policy decides instead of the caller (`POLICY_DECIDED`) is accepted, never sent, and named too.

The Responses API sets the same parameters under a few other names and shapes (`max_output_tokens`,
`reasoning.effort`, a named `tool_choice` without its `function` wrapper): `from_responses` gives the
Chat Completions parameters of a Responses request, so one job carries one vocabulary, and
`responses_name` names a parameter back to a Responses caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Every parameter a deployment can be said to support, in the order the catalog lists them.
FORWARDABLE: tuple[str, ...] = (
    "tool_choice",
    "parallel_tool_calls",
    "logprobs",
    "top_logprobs",
    "max_completion_tokens",
    "max_tokens",
    "stop",
    "seed",
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "reasoning_effort",
    "verbosity",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "user",
)
# A new deployment's default: everything above. An admin narrows it for a model that refuses some
# (a reasoning model refuses `temperature`, `top_p`, the penalties and `logprobs`).
DEFAULT_SUPPORTED: tuple[str, ...] = FORWARDABLE
# Accepted from a caller and never sent: Arbiter, not the caller, asks a provider to store a completion.
POLICY_DECIDED: tuple[str, ...] = ("store",)
OUTPUT_LIMITS = ("max_completion_tokens", "max_tokens")
# Responses parameters sent under the Chat Completions name; the others share their name.
RESPONSES_RENAMED: dict[str, str] = {
    "max_output_tokens": "max_completion_tokens",
    "reasoning.effort": "reasoning_effort",
    "text.verbosity": "verbosity",
}
# Responses parameters no deployment is sent: a chat request has no place for them.
RESPONSES_NOT_SENT: tuple[str, ...] = ("max_tool_calls", "reasoning.summary")


@dataclass(frozen=True, slots=True)
class Forwarded:
    """One deployment's request and the caller's parameters it does not get."""

    request: dict[str, Any]
    dropped: tuple[str, ...]


def caller_parameters(values: dict[str, Any]) -> dict[str, Any]:
    """The forwardable parameters a caller set (a null is as good as unset)."""
    return {name: values[name] for name in FORWARDABLE if values.get(name) is not None}


def policy_decided(values: dict[str, Any]) -> list[str]:
    """The parameters a caller set that the policy decides instead."""
    return [name for name in POLICY_DECIDED if values.get(name) is not None]


def unsupported(names: Iterable[str]) -> list[str]:
    """The names that are not parameters a deployment can support."""
    return [name for name in names if name not in FORWARDABLE]


def for_deployment(request: dict[str, Any], parameters: dict[str, Any], supported: Iterable[str]) -> Forwarded:
    """`request` (Arbiter's own: messages, tools, the policy's limits) with the caller's `parameters`
    that the deployment supports."""
    allowed = set(supported)
    sent = dict(request)
    dropped: list[str] = []
    policy_limit = sent.pop("max_tokens", None)
    for name, value in parameters.items():
        if name not in allowed:
            dropped.append(name)
            continue
        if name in OUTPUT_LIMITS:
            continue  # below: one limit, the smaller of the caller's and the policy's
        if name == "logprobs" and sent.get("logprobs"):
            continue  # the policy already asked for them
        sent[name] = value
    if "top_logprobs" in sent and not sent.get("logprobs"):
        del sent["top_logprobs"]  # a provider refuses top_logprobs without logprobs
        if "top_logprobs" not in dropped:
            dropped.append("top_logprobs")
    caller_limit_name = next((name for name in OUTPUT_LIMITS if name in parameters and name in allowed), None)
    caller_limit = parameters[caller_limit_name] if caller_limit_name else None
    limits = [limit for limit in (policy_limit, caller_limit) if limit is not None]
    if limits:
        sent[caller_limit_name or "max_tokens"] = min(limits)
    for name in OUTPUT_LIMITS:
        # The caller sent both names, or one the deployment does not take: only one limit is sent.
        if name in parameters and name != caller_limit_name and name not in dropped:
            dropped.append(name)
    if "tool_choice" in sent and not sent.get("tools"):
        del sent["tool_choice"]
    if "parallel_tool_calls" in sent and not sent.get("tools"):
        del sent["parallel_tool_calls"]
    return Forwarded(sent, tuple(dropped))


def responses_tool_choice(choice: Any) -> Any:
    """A Responses `tool_choice` in the chat shape: a named function is `{type, function: {name}}`."""
    if isinstance(choice, dict) and choice.get("type") == "function" and "name" in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def from_responses(values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the Chat Completions parameters of a Responses request's `values`, the Responses parameters it set
    that no deployment is sent). `values` is the request with `reasoning` and `text` as objects."""
    flat = dict(values)
    for group in ("reasoning", "text"):
        for name, value in (values.get(group) or {}).items():
            flat[f"{group}.{name}"] = value
    chat = {RESPONSES_RENAMED.get(name, name): value for name, value in flat.items()}
    if chat.get("tool_choice") is not None:
        chat["tool_choice"] = responses_tool_choice(chat["tool_choice"])
    # Responses asks for logprobs by naming them in `include`; `top_logprobs` alone gets none, as there.
    chat["logprobs"] = "message.output_text.logprobs" in (values.get("include") or []) or None
    not_sent = [name for name in RESPONSES_NOT_SENT if flat.get(name) is not None]
    return caller_parameters(chat), not_sent


def responses_name(name: str) -> str:
    """A Chat Completions parameter's name as a Responses caller set it."""
    return next((given for given, chat in RESPONSES_RENAMED.items() if chat == name), name)
