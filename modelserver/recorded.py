"""Recorded-outcomes mode: answers replayed from a JSON Lines file of real model outputs.

A request finds its item by an ``[item:<id>]`` marker anywhere in its messages, else by the canonical
JSON of its messages (roles and text). The served models are the response keys found in the file.
A response without a ``confidence`` is served with ``logprobs: null``: any number there would be invented.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelserver.completions import Reply, tokenize
from modelserver.markers import item_marker
from modelserver.protocol import (
    ApiError,
    ChatRequest,
    canonical_messages,
    estimate_prompt_tokens,
    model_not_found,
)


class OutcomesFileError(ValueError):
    """A recorded-outcomes file that cannot be served; the message is one line naming where."""


@dataclass(frozen=True)
class RecordedResponse:
    content: str
    correct: bool | None
    confidence: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float | None
    cost_usd: float | None


@dataclass(frozen=True)
class RecordedItem:
    id: str
    task_type: str | None
    messages: list[dict[str, Any]]
    reference: str | None
    responses: dict[str, RecordedResponse]


class RecordedOutcomes:
    def __init__(self, items: list[RecordedItem]) -> None:
        self.items = {item.id: item for item in items}
        self.by_messages = {canonical_messages(item.messages): item for item in items}
        self.models = list(dict.fromkeys(model for item in items for model in item.responses))


def load_outcomes(source: str | Path | Iterable[Mapping[str, Any]]) -> RecordedOutcomes:
    """Read and validate a file (or in-process item dicts); any problem raises ``OutcomesFileError``."""
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise OutcomesFileError(f"{path}: cannot read recorded outcomes: {exc.strerror}") from None
        entries = ((f"{path}:{number}", line) for number, line in enumerate(lines, start=1) if line.strip())
    else:
        entries = ((f"item {number}", raw) for number, raw in enumerate(source, start=1))
    items: list[RecordedItem] = []
    seen_ids: dict[str, str] = {}
    seen_messages: dict[str, str] = {}
    for where, raw in entries:
        try:
            item = _parse_item(json.loads(raw) if isinstance(raw, str) else raw)
        except json.JSONDecodeError as exc:
            raise OutcomesFileError(f"{where}: not valid JSON ({exc.msg})") from None
        except ValueError as exc:
            raise OutcomesFileError(f"{where}: {exc}") from None
        if item.id in seen_ids:
            raise OutcomesFileError(f"{where}: id {item.id!r} already used at {seen_ids[item.id]}")
        canonical = canonical_messages(item.messages)
        if canonical in seen_messages:
            raise OutcomesFileError(
                f"{where}: messages repeat those at {seen_messages[canonical]}; "
                "add an [item:<id>] marker to tell them apart"
            )
        seen_ids[item.id], seen_messages[canonical] = where, where
        items.append(item)
    if not items:
        raise OutcomesFileError(f"{source}: no items" if isinstance(source, str | Path) else "no items")
    return RecordedOutcomes(items)


def _parse_item(raw: Any) -> RecordedItem:
    if not isinstance(raw, dict):
        raise ValueError("an item must be a JSON object")
    item_id = raw.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise ValueError("'id' must be a non-empty string")
    messages = raw.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        )
    ):
        raise ValueError(f"item {item_id}: 'messages' must be a non-empty list of {{role, content}} strings")
    responses = raw.get("responses")
    if not isinstance(responses, dict) or not responses:
        raise ValueError(f"item {item_id}: 'responses' must be a non-empty object keyed by model id")
    task_type, reference = raw.get("task_type"), raw.get("reference")
    if task_type is not None and not isinstance(task_type, str):
        raise ValueError(f"item {item_id}: 'task_type' must be a string")
    if reference is not None and not isinstance(reference, str | int | float):
        raise ValueError(f"item {item_id}: 'reference' must be a string or a number")
    return RecordedItem(
        id=item_id,
        task_type=task_type,
        messages=messages,
        reference=None if reference is None else str(reference),
        responses={model: _parse_response(item_id, model, value) for model, value in responses.items()},
    )


def _parse_response(item_id: str, model: str, raw: Any) -> RecordedResponse:
    where = f"item {item_id}, response {model}"
    if not isinstance(raw, dict) or not isinstance(raw.get("content"), str):
        raise ValueError(f"{where}: needs a string 'content'")

    def number(key: str, *, integer: bool = False, high: float = math.inf) -> Any:
        value = raw.get(key)
        if value is None:
            return None
        kinds = int if integer else int | float
        if isinstance(value, bool) or not isinstance(value, kinds) or not 0 <= value <= high:
            bound = (
                "between 0 and 1" if high == 1 else "a non-negative " + ("integer" if integer else "number")
            )
            raise ValueError(f"{where}: '{key}' must be {bound}, got {value!r}")
        return value

    correct = raw.get("correct")
    if correct is not None and not isinstance(correct, bool):
        raise ValueError(f"{where}: 'correct' must be true or false")
    return RecordedResponse(
        content=raw["content"],
        correct=correct,
        confidence=number("confidence", high=1),
        prompt_tokens=number("prompt_tokens", integer=True),
        completion_tokens=number("completion_tokens", integer=True),
        latency_ms=number("latency_ms"),
        cost_usd=number("cost_usd"),
    )


class RecordedBackend:
    mode = "recorded"

    def __init__(self, outcomes: RecordedOutcomes, *, latency_scale: float = 0.0) -> None:
        self.outcomes = outcomes
        self.latency_scale = latency_scale

    def model_ids(self) -> list[str]:
        return self.outcomes.models

    def serves(self, model: str) -> bool:
        return model in self.outcomes.models

    def reply(self, request: ChatRequest) -> Reply:
        if not self.serves(request.model):
            raise model_not_found(request.model)
        item = self._match(request)
        response = item.responses.get(request.model)
        if response is None:
            raise ApiError(
                404,
                f"Item {item.id!r} has no recorded response from model `{request.model}`.",
                param="model",
                code="response_not_recorded",
            )
        return Reply(
            content=response.content,
            confidence=response.confidence,
            prompt_tokens=response.prompt_tokens or estimate_prompt_tokens(request.messages),
            completion_tokens=(
                response.completion_tokens
                if response.completion_tokens is not None
                else len(tokenize(response.content))
            ),
            latency_s=(response.latency_ms or 0.0) * self.latency_scale / 1000,
        )

    def _match(self, request: ChatRequest) -> RecordedItem:
        item_id = item_marker(request.text)
        if item_id is not None:
            item = self.outcomes.items.get(item_id)
            if item is None:
                raise ApiError(
                    404, f"No recorded item has id {item_id!r}.", param="messages", code="item_not_found"
                )
            return item
        item = self.outcomes.by_messages.get(canonical_messages(request.messages))
        if item is None:
            raise ApiError(
                404,
                "No recorded item matches these messages; send them exactly as recorded "
                "or add an [item:<id>] marker.",
                param="messages",
                code="item_not_found",
            )
        return item
