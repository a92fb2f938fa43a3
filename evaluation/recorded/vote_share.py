"""A small three-tier outcome set whose cheap tiers' confidence is the vote share of sampled answers: a
synthetic stand-in for the real set of issue 17 (369 items; a cheap open model, a mid model, a flagship).

Each item has a latent difficulty d ~ U(0, 1) shared by every tier, so the tiers' errors go together as
real models' do. A tier samples `VOTES` answers, each right with probability sigmoid(skill - SLOPE (d - 1/2));
each wrong sample is the item's one tempting wrong answer with probability `WRONG_AGREE`, else one of its own. The
tier answers the plurality (ties to the right answer, as a vote counter that sees it first would) and its
confidence is the plurality's share: only the values 1/VOTES, ..., 1 occur. The flagship answers once.
Each answer costs its tier's `COSTS` (recorded, so no price list is read): nano 10% and mini 30% of the
flagship.

Deterministic in (seed, item): the same seed gives the same set.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

VOTES = 5
WRONG_AGREE = 0.5
SKILLS = {"sim-nano": 1.5, "sim-mini": 2.5, "sim-flagship": 4.0}
SLOPE = 8.0
TOKENS = {"prompt": 60, "completion": 40}
COSTS = {"sim-nano": 0.0001, "sim-mini": 0.0003, "sim-flagship": 0.001}


def _vote(draws: random.Random, chance: float) -> tuple[bool, float]:
    right = sum(draws.random() < chance for _ in range(VOTES))
    wrong = VOTES - right
    agreeing = sum(draws.random() < WRONG_AGREE for _ in range(wrong))
    largest_wrong = max(agreeing, min(wrong, 1))
    if right >= largest_wrong:
        return True, right / VOTES
    return False, largest_wrong / VOTES


def vote_share_items(*, items: int = 369, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Recorded-outcome items (the format of modelserver.generate) with vote-share confidences."""
    for number in range(1, items + 1):
        draws = random.Random(f"vote-share:{seed}:{number}")
        difficulty = round(draws.random(), 4)
        responses = {}
        for model, skill in SKILLS.items():
            chance = 1 / (1 + math.exp(-(skill - SLOPE * (difficulty - 0.5))))
            if model == "sim-flagship":
                correct, confidence = draws.random() < chance, 1.0
            else:
                correct, confidence = _vote(draws, chance)
            responses[model] = {
                "content": "42" if correct else "41",
                "correct": correct,
                "confidence": confidence,
                "prompt_tokens": TOKENS["prompt"],
                "completion_tokens": TOKENS["completion"],
                "latency_ms": 500,
                "cost_usd": COSTS[model],
            }
        yield {
            "id": f"vote-{seed}-{number:05d}",
            "task_type": "reasoning",
            "difficulty": difficulty,
            "messages": [{"role": "user", "content": f"[task:reasoning] Solve word problem #{number}."}],
            "reference": "42",
            "responses": responses,
        }
