"""A recorded-outcomes file drawn from the synthetic model, so evaluation code has known ground truth.

Each item's messages carry ``[task:...]`` and ``[difficulty:...]`` markers, so a synthetic server started
with the same ``--seed`` answers them exactly as written here, and a recorded server replays them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

from modelserver.completions import tokenize
from modelserver.markers import parse_markers
from modelserver.protocol import canonical_messages, estimate_prompt_tokens
from modelserver.synthetic import TIER_ORDER, TIERS, answer_text, outcome_for
from routing.decide.tiers import TASK_TYPES

_PROMPTS = {
    "classification": "Classify ticket #{n} as billing, technical, account, shipping, refund or other.",
    "extraction": "Extract the invoice number from document #{n}.",
    "ranking": "Rank the four passages retrieved for query #{n}, most relevant first.",
    "search": "Search the knowledge base for the document that answers question #{n}.",
    "code_review": "Review this diff #{n} and point at the faulty line.",
    "coding": "Implement the change requested in ticket #{n} and name the patch.",
    "planning": "Plan the migration of project #{n}: choose among plans A to H.",
    "reasoning": "Solve word problem #{n} and give the final number.",
    "general": "Answer request #{n}.",
}


def generate_items(
    *,
    items: int,
    seed: int = 0,
    tiers: Sequence[str] = TIER_ORDER,
    task_types: Sequence[str] = TASK_TYPES,
) -> Iterator[dict[str, Any]]:
    unknown = [tier for tier in tiers if tier not in TIERS] + [t for t in task_types if t not in TASK_TYPES]
    if unknown:
        raise ValueError(f"unknown tier or task type: {', '.join(unknown)}")
    draws = random.Random(seed)
    for number in range(1, items + 1):
        task_type = draws.choice(list(task_types))
        difficulty = round(draws.random(), 2)
        text = f"[task:{task_type}] [difficulty:{difficulty}] {_PROMPTS[task_type].format(n=number)}"
        messages = [{"role": "user", "content": text}]
        canonical = canonical_messages(messages)
        markers = parse_markers(text)
        responses = {}
        reference = None
        for tier in tiers:
            outcome = outcome_for(seed=str(seed), tier=tier, canonical=canonical, text=text, markers=markers)
            reference = outcome.reference
            content = answer_text(task_type, outcome.answer)
            prompt_tokens = estimate_prompt_tokens(messages)
            completion_tokens = len(tokenize(content))
            profile = TIERS[tier]
            responses[f"sim-{tier}"] = {
                "content": content,
                "correct": outcome.correct,
                "confidence": outcome.confidence,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "latency_ms": profile.base_latency_ms + profile.per_token_latency_ms * completion_tokens,
                "cost_usd": round(
                    (
                        prompt_tokens * profile.input_usd_per_mtok
                        + completion_tokens * profile.output_usd_per_mtok
                    )
                    / 1e6,
                    10,
                ),
            }
        yield {
            "id": f"sim-{seed}-{number:05d}",
            "task_type": task_type,
            "difficulty": difficulty,
            "messages": messages,
            "reference": reference,
            "responses": responses,
        }
