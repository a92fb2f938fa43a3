"""The one adapter between Arbiter and model providers: the official `openai` SDK.

Nothing else in the code talks HTTP to a model. The SDK's own retries are off: the pipeline's
retry loop owns retries, so that every attempt is counted and logged.
"""

from __future__ import annotations

import functools

import openai


@functools.lru_cache(maxsize=64)
def client_for(base_url: str, api_key: str, timeout: float) -> openai.OpenAI:
    # One client (and so one pooled HTTP connection set) per deployment endpoint and process.
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)


def list_models(base_url: str, *, api_key: str = "unused", timeout: float = 5.0) -> list[str]:
    return [model.id for model in client_for(base_url, api_key, timeout).models.list()]
