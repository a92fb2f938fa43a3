"""A trickle of the jobs agent systems send, for the demo. Markers steer the local model server."""

from __future__ import annotations

import random

DEMO_JOBS: list[dict] = [
    {
        "task_type": "classification",
        "messages": [
            {"role": "system", "content": "Classify the support ticket as billing, bug, account or other."},
            {
                "role": "user",
                "content": "[task:classification] I was charged twice for my subscription this month.",
            },
        ],
    },
    {
        "task_type": "classification",
        "messages": [
            {
                "role": "user",
                "content": "[task:classification] [difficulty:0.85] The export sometimes hangs, "
                "maybe after the SSO change, and my invoice shows a seat I removed. Which queue?",
            },
        ],
    },
    {
        "task_type": "extraction",
        "messages": [
            {
                "role": "user",
                "content": "[task:extraction] Extract the failing test and the error from this build log:\n"
                "FAILED tests/test_api.py::test_submit - AssertionError: 500 != 201",
            },
        ],
    },
    {
        "task_type": "search",
        "messages": [
            {
                "role": "user",
                "content": "[task:search] Find where the retry backoff for provider calls is computed.",
            },
        ],
    },
    {
        "task_type": "code_review",
        "messages": [
            {
                "role": "user",
                "content": "[task:code_review] Review: def total(xs): return sum(x for x in xs if x)",
            },
        ],
    },
    {
        "task_type": "planning",
        "messages": [
            {
                "role": "user",
                "content": "[task:planning] Plan the migration of the billing service to the new ledger.",
            },
        ],
    },
    {
        "task_type": "general",
        "messages": [
            {
                "role": "user",
                "content": '[task:general] [call:issue_refund {"amount": 180}] '
                "The customer asks for a refund of the duplicate charge of 180 EUR.",
            },
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "issue_refund",
                    "parameters": {
                        "type": "object",
                        "properties": {"amount": {"type": "number"}},
                        "required": ["amount"],
                    },
                },
            },
        ],
    },
    {
        "task_type": "classification",
        "labels": {"pii": True},
        "messages": [
            {
                "role": "user",
                "content": "[task:classification] Customer jane.doe@example.com asks to close "
                "her account; card 4111 1111 1111 1111 on file.",
            },
        ],
    },
]


def pick_demo_job(rng: random.Random | None = None) -> dict:
    return dict((rng or random).choice(DEMO_JOBS))
