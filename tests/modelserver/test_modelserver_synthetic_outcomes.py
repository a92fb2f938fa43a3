"""The synthetic model behaves like tiers of real models: skill, difficulty, calibration, ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from statistics import mean

import openai
import pytest

from modelserver import ModelServer, load_outcomes
from modelserver.generate import generate_items
from tests.modelserver.sim_helpers import answer_of, confidence_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reasoning_run() -> dict[str, list[tuple[float, bool, float]]]:
    """300 generated reasoning items answered over HTTP by every tier: (difficulty, correct, confidence)."""
    items = list(generate_items(items=300, seed=7, task_types=["reasoning"]))
    results: dict[str, list[tuple[float, bool, float]]] = {}
    with ModelServer(seed=7, latency_scale=0) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        for tier in ("nano", "mini", "flagship"):
            model = f"sim-{tier}"
            results[tier] = []
            for item in items:
                completion = client.chat.completions.create(
                    model=model, messages=item["messages"], logprobs=True
                )
                recorded = item["responses"][model]
                # The generated file is exactly what a server with the same seed answers.
                assert completion.choices[0].message.content == recorded["content"]
                assert confidence_of(completion) == pytest.approx(recorded["confidence"], abs=1e-9)
                correct = answer_of(completion) == item["reference"]
                assert correct == recorded["correct"]
                results[tier].append((item["difficulty"], correct, confidence_of(completion)))
    return results


def accuracy(rows: list[tuple[float, bool, float]]) -> float:
    return mean(correct for _, correct, _ in rows)


def test_it_ranks_tiers_by_accuracy_on_hard_reasoning(reasoning_run: dict) -> None:
    hard = {tier: [row for row in rows if row[0] >= 0.6] for tier, rows in reasoning_run.items()}

    assert len(hard["nano"]) > 60
    assert accuracy(hard["flagship"]) > accuracy(hard["mini"]) + 0.15
    assert accuracy(hard["mini"]) > accuracy(hard["nano"])


def test_it_makes_easy_items_easier(reasoning_run: dict) -> None:
    for rows in reasoning_run.values():
        easy = [row for row in rows if row[0] <= 0.3]
        hard = [row for row in rows if row[0] >= 0.7]
        assert accuracy(easy) > accuracy(hard)


def test_it_correlates_confidence_with_correctness(reasoning_run: dict) -> None:
    for tier in ("mini", "flagship"):
        rows = reasoning_run[tier]
        right = [confidence for _, correct, confidence in rows if correct]
        wrong = [confidence for _, correct, confidence in rows if not correct]
        assert mean(right) > mean(wrong) + 0.15
        # Overlapping, like real calibration: some wrong answers are confident.
        assert max(wrong) > min(right)


def test_it_keeps_nano_good_at_easy_classification() -> None:
    items = list(generate_items(items=200, seed=3, task_types=["classification"], tiers=["nano"]))
    easy = [item["responses"]["sim-nano"]["correct"] for item in items if item["difficulty"] <= 0.4]

    assert mean(easy) > 0.9


def test_it_generates_a_servable_outcomes_file_from_the_command_line(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelserver",
            "generate",
            "--items",
            "30",
            "--seed",
            "5",
            "--tiers",
            "nano,flagship",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 30
    first = json.loads(lines[0])
    assert set(first["responses"]) == {"sim-nano", "sim-flagship"}
    assert {"content", "correct", "confidence", "prompt_tokens", "completion_tokens", "cost_usd"} <= set(
        first["responses"]["sim-nano"]
    )
    path = tmp_path / "generated.jsonl"
    path.write_text(run.stdout)
    assert load_outcomes(path).models == ["sim-nano", "sim-flagship"]


def test_it_rejects_an_unknown_tier_when_generating() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "modelserver", "generate", "--items", "3", "--tiers", "nano,huge"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert run.returncode == 2
    assert run.stderr.strip() == "modelserver: unknown tier or task type: huge"
