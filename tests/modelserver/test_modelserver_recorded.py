"""Recorded-outcomes mode: real answers replayed, confidence carried exactly, bad files refused clearly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from modelserver import ModelServer, OutcomesFileError, load_outcomes
from tests.modelserver.sim_helpers import confidence_of, raw_request

ITEMS = [
    {
        "id": "gsm8k-0001",
        "task_type": "reasoning",
        "messages": [{"role": "user", "content": "Janet's ducks lay 16 eggs per day..."}],
        "reference": "18",
        "responses": {
            "gpt-4-1106-preview": {
                "content": "She sells 9 eggs at $2 each.\nThe answer is 18",
                "correct": True,
                "confidence": 0.9312345678,
                "prompt_tokens": 120,
                "completion_tokens": 85,
                "latency_ms": 900,
                "cost_usd": 0.0031,
            },
            "mixtral-8x7b": {"content": "The answer is 16", "correct": False},
        },
    },
    {
        "id": "gsm8k-0002",
        "messages": [
            {"role": "system", "content": "Solve it."},
            {"role": "user", "content": "A robe takes 2 bolts of blue fiber..."},
        ],
        "responses": {"gpt-4-1106-preview": {"content": "The answer is 3", "confidence": 0.41}},
    },
]


@pytest.fixture
def outcomes_file(tmp_path: Path) -> Path:
    path = tmp_path / "outcomes.jsonl"
    path.write_text("\n".join(json.dumps(item) for item in ITEMS) + "\n\n")
    return path


@pytest.fixture
def recorded_client(outcomes_file: Path) -> Iterator[tuple[ModelServer, openai.OpenAI]]:
    with ModelServer(mode="recorded", outcomes=outcomes_file) as server:
        yield server, openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)


def test_it_replays_the_recorded_answer_usage_and_confidence(recorded_client: tuple) -> None:
    server, client = recorded_client

    completion = client.chat.completions.create(
        model="gpt-4-1106-preview", messages=ITEMS[0]["messages"], logprobs=True, top_logprobs=2
    )

    assert completion.choices[0].message.content == ITEMS[0]["responses"]["gpt-4-1106-preview"]["content"]
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (120, 85)
    assert confidence_of(completion) == pytest.approx(0.9312345678, abs=1e-9)
    assert raw_request(server, "GET", "/healthz")[2] == {
        "status": "ok",
        "mode": "recorded",
        "models": ["gpt-4-1106-preview", "mixtral-8x7b"],
    }


def test_it_matches_by_item_marker_and_ignores_extra_message_fields(recorded_client: tuple) -> None:
    _, client = recorded_client
    by_marker = client.chat.completions.create(
        model="gpt-4-1106-preview",
        messages=[{"role": "user", "content": "Reworded question. [item:gsm8k-0002]"}],
        logprobs=True,
    )
    by_messages = client.chat.completions.create(
        model="gpt-4-1106-preview",
        messages=[{**message, "name": "someone"} for message in ITEMS[1]["messages"]],
        logprobs=True,
    )

    for completion in (by_marker, by_messages):
        assert completion.choices[0].message.content == "The answer is 3"
        assert confidence_of(completion) == pytest.approx(0.41, abs=1e-9)


def test_it_omits_logprobs_when_no_confidence_was_recorded(recorded_client: tuple) -> None:
    _, client = recorded_client

    completion = client.chat.completions.create(
        model="mixtral-8x7b", messages=ITEMS[0]["messages"], logprobs=True
    )

    assert completion.choices[0].message.content == "The answer is 16"
    assert completion.choices[0].logprobs is None
    assert completion.usage.completion_tokens > 0


def test_it_answers_404_for_an_unmatched_item_or_an_unrecorded_model(recorded_client: tuple) -> None:
    _, client = recorded_client

    with pytest.raises(openai.NotFoundError) as unmatched:
        client.chat.completions.create(model="mixtral-8x7b", messages=[{"role": "user", "content": "new"}])
    with pytest.raises(openai.NotFoundError) as unknown_id:
        client.chat.completions.create(
            model="mixtral-8x7b", messages=[{"role": "user", "content": "[item:nope]"}]
        )
    with pytest.raises(openai.NotFoundError) as not_recorded:
        client.chat.completions.create(model="mixtral-8x7b", messages=ITEMS[1]["messages"])
    with pytest.raises(openai.NotFoundError) as unknown_model:
        client.chat.completions.create(model="sim-nano", messages=ITEMS[0]["messages"])

    assert unmatched.value.code == unknown_id.value.code == "item_not_found"
    assert "[item:<id>]" in unmatched.value.message
    assert not_recorded.value.code == "response_not_recorded"
    assert unknown_model.value.code == "model_not_found"


def test_it_serves_in_process_items_too() -> None:
    with ModelServer(mode="recorded", outcomes=ITEMS) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        completion = client.chat.completions.create(model="mixtral-8x7b", messages=ITEMS[0]["messages"])

    assert completion.choices[0].message.content == "The answer is 16"


def _with_line_3(tmp_path: Path, third: str) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{json.dumps(ITEMS[0])}\n\n{third}\n{json.dumps(ITEMS[1])}\n")
    return path


@pytest.mark.parametrize(
    ("third_line", "problem"),
    [
        ('{"id": "x", "messages": ', "not valid JSON"),
        ('{"id": "x", "messages": [{"role": "user", "content": "q"}]}', "'responses'"),
        ('{"id": "x", "messages": [], "responses": {"m": {"content": "a"}}}', "'messages'"),
        ('{"id": "x", "messages": [{"role": "user", "content": "q"}], "responses": {"m": {}}}', "'content'"),
        (
            '{"id": "x", "messages": [{"role": "user", "content": "q"}], '
            '"responses": {"m": {"content": "a", "confidence": 1.5}}}',
            "'confidence' must be between 0 and 1",
        ),
        (json.dumps({**ITEMS[1], "id": "gsm8k-0001"}), "already used"),
    ],
)
def test_it_refuses_a_bad_outcomes_file_naming_the_line(
    tmp_path: Path, third_line: str, problem: str
) -> None:
    path = _with_line_3(tmp_path, third_line)

    with pytest.raises(OutcomesFileError) as raised:
        load_outcomes(path)

    message = str(raised.value)
    assert message.startswith(f"{path}:3: ")
    assert problem in message
    assert "\n" not in message


def test_it_refuses_duplicate_messages_at_load(tmp_path: Path) -> None:
    path = _with_line_3(tmp_path, json.dumps({**ITEMS[0], "id": "copy"}))

    with pytest.raises(OutcomesFileError, match=r":3: messages repeat those at .*:1"):
        load_outcomes(path)
