"""The one adapter between Arbiter and model providers: the official `openai` SDK.

Nothing else in the code talks HTTP to a model. The SDK's own retries are off: the pipeline's retry
loop (routing.calls) owns retries, so that every attempt is counted, paced and logged.

A deployment is written by a policy admin, and the adapter sends the named environment variable as a
bearer token, with every tenant's prompts, to the deployment's URL. So only variables under
`ARBITER_PROVIDER_KEY_` or listed in `ARBITER_PROVIDER_KEY_ENV_ALLOWLIST` are ever read, and the URL
gets the webhooks' address rules (routing.addresses). Both are checked when a deployment is written
(routing.services.catalog) and again before every call, so a row that predates the rules sends nothing.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import Any

import openai
from django.conf import settings
from openai.types.chat import ChatCompletion

from routing.addresses import UnsafeAddress, url_target

KEY_ENV_PREFIX = "ARBITER_PROVIDER_KEY_"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What the adapter needs of a deployment: where, which model, which key, how long to wait."""

    name: str
    base_url: str
    model: str
    api_key_env: str
    timeout_s: float


class ProviderError(Exception):
    """A failed call. `retryable` says whether the same request may succeed later."""

    def __init__(
        self, message: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class ProviderResponse:
    completion: ChatCompletion
    request_id: str
    latency_ms: int


@functools.lru_cache(maxsize=64)
def client_for(base_url: str, api_key: str, timeout: float) -> openai.OpenAI:
    # One client (and so one pooled set of HTTP connections) per endpoint and process.
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)


def key_env_refusal(name: str) -> str | None:
    """Why a deployment may not read this environment variable, or None when it may."""
    if not name:
        return None  # no key (a local model server)
    if name.startswith(KEY_ENV_PREFIX) and len(name) > len(KEY_ENV_PREFIX):
        return None
    if name in settings.ARBITER_PROVIDER_KEY_ENV_ALLOWLIST:
        return None
    return (
        f"the environment variable {name!r} may not be used as a provider key: name one that starts with "
        f"{KEY_ENV_PREFIX} or that the operator listed in ARBITER_PROVIDER_KEY_ENV_ALLOWLIST"
    )


def base_url_check(url: str) -> None:
    """Raises UnsafeAddress when a deployment may not send requests to this URL."""
    allowed = settings.ARBITER_ALLOW_PRIVATE_PROVIDER_URLS
    url_target(
        url,
        what="base URL",
        allow_loopback=allowed,
        allow_private=allowed,
        loopback_setting="ARBITER_ALLOW_PRIVATE_PROVIDER_URLS",
        private_setting="ARBITER_ALLOW_PRIVATE_PROVIDER_URLS",
    )


def _api_key(endpoint: Endpoint) -> str:
    refusal = key_env_refusal(endpoint.api_key_env)
    if refusal:
        raise ProviderError(f"deployment {endpoint.name}: {refusal}", retryable=False)
    if not endpoint.api_key_env:
        return "not-needed"
    return os.environ.get(endpoint.api_key_env, "") or "missing-key"


def _checked_base_url(endpoint: Endpoint) -> str:
    try:
        base_url_check(endpoint.base_url)
    except UnsafeAddress as refused:
        raise ProviderError(f"deployment {endpoint.name}: refused: {refused}", retryable=False) from None
    return endpoint.base_url


def _retry_after(exc: openai.APIStatusError) -> float | None:
    raw = exc.response.headers.get("retry-after") if exc.response is not None else None
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def chat(endpoint: Endpoint, request: dict[str, Any], *, timeout_s: float | None = None) -> ProviderResponse:
    """One Chat Completions call, with provider faults classified for the retry loop."""
    api_key = _api_key(endpoint)
    client = client_for(_checked_base_url(endpoint), api_key, timeout_s or endpoint.timeout_s)
    started = time.perf_counter()
    try:
        raw = client.chat.completions.with_raw_response.create(model=endpoint.model, **request)
    except openai.RateLimitError as exc:
        raise ProviderError(str(exc), retryable=True, status=429, retry_after=_retry_after(exc)) from exc
    except openai.APIStatusError as exc:
        retryable = exc.status_code >= 500 or exc.status_code in (408, 409)
        raise ProviderError(
            str(exc), retryable=retryable, status=exc.status_code, retry_after=_retry_after(exc)
        ) from exc
    except openai.APITimeoutError as exc:
        raise ProviderError(
            f"timed out after {timeout_s or endpoint.timeout_s:.1f} s", retryable=True
        ) from exc
    except openai.APIConnectionError as exc:
        raise ProviderError(f"connection failed: {exc}", retryable=True) from exc
    latency_ms = int((time.perf_counter() - started) * 1000)
    completion = raw.parse()
    request_id = raw.headers.get("x-request-id") or completion.id
    return ProviderResponse(completion=completion, request_id=request_id, latency_ms=latency_ms)


def list_models(base_url: str, *, api_key: str = "not-needed", timeout: float = 5.0) -> list[str]:
    return [model.id for model in client_for(base_url, api_key, timeout).models.list()]
