"""Model server fixtures: a fresh server per test (it starts in milliseconds) and the real SDK."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from modelserver import ModelServer


@pytest.fixture
def sim_server() -> Iterator[ModelServer]:
    with ModelServer(latency_scale=0) as server:
        yield server


@pytest.fixture
def sim_client(sim_server: ModelServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim_server.base_url, api_key="x", max_retries=0)
