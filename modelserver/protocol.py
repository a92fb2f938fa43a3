"""The request side of Chat Completions: validation, OpenAI's error shape, message text helpers."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    """An error answered to the client in OpenAI's shape ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


def model_not_found(model: str) -> ApiError:
    return ApiError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    tool_choice: str | dict[str, Any] | None
    logprobs: bool
    top_logprobs: int
    response_format: dict[str, Any] | None
    seed: int | None
    max_tokens: int | None
    stream: bool = False
    include_usage: bool = False

    @property
    def text(self) -> str:
        return "\n".join(message_text(message) for message in self.messages)


def _invalid(param: str, message: str, code: str | None = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _missing(param: str) -> ApiError:
    return _invalid(param, f"Missing required parameter: '{param}'.", code="missing_required_parameter")


def _optional_int(body: dict[str, Any], param: str, *, low: int, high: int) -> int | None:
    value = body.get(param)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(param, f"'{param}' must be an integer between {low} and {high}, got {value!r}.")
    return value


def parse_chat_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise _invalid("body", "The request body must be a JSON object.", code=None)
    model = body.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "'model' must be a non-empty string.")
    messages = body.get("messages")
    if messages is None:
        raise _missing("messages")
    _check_messages(messages)
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise _invalid("stream", "'stream' must be a boolean.")
    stream_options = body.get("stream_options")
    if stream_options is not None and not (stream and isinstance(stream_options, dict)):
        raise _invalid("stream_options", "'stream_options' must be an object, and only with 'stream': true.")
    if body.get("n", 1) != 1:
        raise _invalid("n", f"Only n=1 is supported, got {body.get('n')!r}.")
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(_is_function_tool(t) for t in tools)):
        raise _invalid("tools", "'tools' must be a list of {'type': 'function', 'function': {'name': ...}}.")
    tool_choice = body.get("tool_choice")
    if tool_choice is not None and not (
        tool_choice in ("none", "auto", "required")
        or (isinstance(tool_choice, dict) and _is_function_tool(tool_choice))
    ):
        raise _invalid(
            "tool_choice", "'tool_choice' must be 'none', 'auto', 'required' or a function choice."
        )
    logprobs = body.get("logprobs") or False
    if not isinstance(logprobs, bool):
        raise _invalid("logprobs", "'logprobs' must be a boolean.")
    top_logprobs = _optional_int(body, "top_logprobs", low=0, high=20)
    if top_logprobs and not logprobs:
        raise _invalid("top_logprobs", "'top_logprobs' requires 'logprobs' to be true.")
    max_tokens = _optional_int(body, "max_completion_tokens", low=1, high=10**7)
    if max_tokens is None:
        max_tokens = _optional_int(body, "max_tokens", low=1, high=10**7)
    return ChatRequest(
        model=model,
        messages=messages,
        tools=tools or None,
        tool_choice=tool_choice,
        logprobs=logprobs,
        top_logprobs=top_logprobs or 0,
        response_format=_response_format(body.get("response_format")),
        seed=_optional_int(body, "seed", low=-(2**63), high=2**63 - 1),
        max_tokens=max_tokens,
        stream=stream,
        include_usage=bool((stream_options or {}).get("include_usage")),
    )


def _is_function_tool(tool: Any) -> bool:
    return (
        isinstance(tool, dict)
        and tool.get("type") == "function"
        and isinstance(tool.get("function"), dict)
        and isinstance(tool["function"].get("name"), str)
    )


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "'messages' must be a non-empty list of messages.")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _invalid(f"messages[{index}]", f"messages[{index}] must be an object with a string 'role'.")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _invalid(
                f"messages[{index}].content",
                f"messages[{index}].content must be a string or a list of parts.",
            )


def _response_format(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return value
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict | bool):
            raise _invalid("response_format", "'response_format.json_schema' must hold a 'schema' object.")
        return value
    raise _invalid(
        "response_format", "'response_format.type' must be 'text', 'json_object' or 'json_schema'."
    )


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def canonical_messages(messages: list[dict[str, Any]]) -> str:
    """The identity of a conversation: roles and text only, so SDK-added fields do not break a match."""
    normalised = [{"role": message.get("role"), "content": message_text(message)} for message in messages]
    return json.dumps(normalised, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return max(1, math.ceil(sum(len(message_text(message)) for message in messages) / 4))
