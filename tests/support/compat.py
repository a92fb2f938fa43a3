"""The compatibility table's vocabulary: the `compat(client, feature, how)` mark a real-client test carries,
and the clients and features it may name. tests/support/compat_table.py turns the marks into README's table."""

from __future__ import annotations

import pytest

# client key → (the row's name, the distribution whose installed version the row shows, what of it is used)
CLIENTS: dict[str, tuple[str, str, str]] = {
    "openai": ("openai SDK", "openai", "`OpenAI`, `AsyncOpenAI`"),
    "agents": ("OpenAI Agents SDK", "openai-agents", "`Runner` on its default Responses API"),
    "langchain": ("LangChain `ChatOpenAI`", "langchain-openai", ""),
    "pydantic-ai": ("pydantic-ai", "pydantic-ai-slim", "`OpenAIChatModel`"),
    "litellm": ("litellm", "litellm", '`litellm.completion(model="openai/auto", api_base=…)`'),
    "instructor": ("instructor", "instructor", ""),
}

# feature → its column heading, in the table's order
FEATURES: dict[str, str] = {
    "call": "call",
    "stream": "stream",
    "tools": "tools",
    "structured output": "structured output",
    "route headers": "route headers",
    "held call": "held call (one job under default retries)",
}


def compat(client: str, feature: str, how: str) -> pytest.MarkDecorator:
    """Marks a test as the proof of one cell of the table: `client` does `feature` through Arbiter, as `how`
    says (the cell's text; the texts of a cell's tests are joined in test order, each once)."""
    if client not in CLIENTS:
        raise ValueError(f"unknown client {client!r}: one of {', '.join(CLIENTS)}")
    if feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}: one of {', '.join(FEATURES)}")
    return pytest.mark.compat(client=client, feature=feature, how=how)
