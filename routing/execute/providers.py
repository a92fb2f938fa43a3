"""The one adapter between Arbiter and model providers: the official `openai` SDK.

Nothing else in the code talks HTTP to a model. The SDK's own retries are off: the pipeline's retry
loop (routing.execute.calls) owns retries, so that every attempt is counted, paced and logged.

A deployment is written by a policy admin, and the adapter sends the named environment variable as a
bearer token, with every tenant's prompts, to the deployment's URL. So only variables under
`ARBITER_PROVIDER_KEY_` or listed in `ARBITER_PROVIDER_KEY_ENV_ALLOWLIST` are ever read, and the URL
gets the webhooks' address rules (routing.execute.addresses). Both are checked when a deployment is written
(routing.services.catalog) and again before every call (with addresses at most PIN_TTL_S old), so a row
that predates the rules sends nothing.

A check is worth only what the connection does next: the SDK's own HTTP client would follow a redirect
(a public host answering 307 to 127.0.0.1 or to the metadata service) and resolve the host again (DNS
rebinding). So a deployment's client never follows redirects (a 3xx is a provider error) and connects
only to the addresses the check approved (`_PinnedBackend`), with the Host header and TLS server name
still the URL's host so the certificate is verified as usual. The approved addresses are kept per
client for PIN_TTL_S, then resolved and checked again.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import httpcore2
import httpx2
import openai
from django.conf import settings
from openai._base_client import make_request_options
from openai._constants import RAW_RESPONSE_HEADER
from openai._legacy_response import LegacyAPIResponse
from openai.resources.chat.completions.completions import Completions, validate_response_format
from openai.types.chat import ChatCompletion

from routing.execute.addresses import Target, UnsafeAddress, url_target

KEY_ENV_PREFIX = "ARBITER_PROVIDER_KEY_"
PIN_TTL_S = 60.0  # how long a deployment's checked addresses are trusted before they are resolved again


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

    def __init__(self, message: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None):
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
    # The operator's own model server (the health check): its URL comes from the environment, not from a
    # policy admin, so it is not pinned.
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)


class PinnedAddresses:
    """A deployment URL's checked addresses, shared by the connections of one cached client.

    Resolved and checked on first use and again once PIN_TTL_S old: the hot path pays one lookup a minute,
    and a host that rebinds to a refused address is refused within a minute, before anything is sent."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._lock = threading.Lock()
        self._target: Target | None = None
        self._checked_at = 0.0

    def target(self) -> Target:
        """The checked target; raises UnsafeAddress when the URL (now) resolves somewhere refused."""
        with self._lock:
            if self._target is None or time.monotonic() - self._checked_at >= PIN_TTL_S:
                self._target = None  # a failed re-check must not leave the old addresses usable
                self._target = base_url_target(self.base_url)
                self._checked_at = time.monotonic()
            return self._target


class _PinnedBackend(httpcore2.NetworkBackend):
    """Opens TCP connections only to the checked addresses of the deployment's own host. httpcore still
    sends the URL's host as Host and as the TLS server name, so certificates verify as usual."""

    def __init__(self, pinned: PinnedAddresses) -> None:
        self._pinned = pinned
        self._backend = httpcore2.SyncBackend()
        # The host as httpx writes it (IDNA-encoded, lower case), to compare with what it asks to connect to.
        self._host = httpx2.URL(pinned.base_url).raw_host.decode("ascii").rstrip(".")

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        target = self._pinned.target()
        if host.rstrip(".").lower() != self._host or port != target.port:
            # Nothing but the deployment's own origin, whatever asked (a redirect, a proxy setting).
            raise UnsafeAddress(f"{host}:{port} is not the deployment's host ({target.host}:{target.port})")
        for index, address in enumerate(target.addresses):
            try:
                return self._backend.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout):
                if index == len(target.addresses) - 1:
                    raise
        raise httpcore2.ConnectError("no address to connect to")

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise UnsafeAddress("a deployment never connects to a Unix socket")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _PinnedTransport(httpx2.HTTPTransport):
    def __init__(self, pinned: PinnedAddresses) -> None:
        super().__init__(trust_env=False)
        limits = httpx2.Limits()
        # HTTPTransport takes no network backend, so its pool is rebuilt with the pinned one (same settings).
        self._pool = httpcore2.ConnectionPool(
            ssl_context=httpx2.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(pinned),
        )


@dataclass(frozen=True, slots=True)
class _DeploymentClient:
    client: openai.OpenAI
    pinned: PinnedAddresses


@functools.lru_cache(maxsize=64)
def _deployment_client(base_url: str, api_key: str, timeout: float, allow_private: bool) -> _DeploymentClient:
    # One client (and so one pooled set of HTTP connections) per endpoint and process; `allow_private` is
    # in the key so that a change of the setting is never answered by a client checked under the old one.
    pinned = PinnedAddresses(base_url)
    http_client = httpx2.Client(transport=_PinnedTransport(pinned), follow_redirects=False, trust_env=False)
    client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0, http_client=http_client)
    return _DeploymentClient(client, pinned)


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
    base_url_target(url)


def base_url_target(url: str) -> Target:
    """The URL's checked addresses; raises UnsafeAddress when a deployment may not send requests to it."""
    allowed = settings.ARBITER_ALLOW_PRIVATE_PROVIDER_URLS
    return url_target(
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


def _retry_after(exc: openai.APIStatusError) -> float | None:
    raw = exc.response.headers.get("retry-after") if exc.response is not None else None
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


# A provider's answer that the request itself is wrong (not the deployment's key, model name or health):
# the caller's to fix, so it reaches the caller as the same 4xx (routing.api.openai).
REQUEST_REFUSED = frozenset({400, 413, 422})


def _provider_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    return (message if isinstance(message, str) and message else exc.message)[:500]


# What `chat.completions.create` takes as the request body's fields (the rest are its request options).
_BODY_FIELDS = frozenset(inspect.signature(Completions.create).parameters) - {
    "self",
    "extra_headers",
    "extra_query",
    "extra_body",
    "timeout",
    "stream",
}


def _create(
    client: openai.OpenAI, model: str, request: dict[str, Any], timeout_s: float | None
) -> LegacyAPIResponse[ChatCompletion]:
    """`client.chat.completions.with_raw_response.create(model=model, **request)`, minus the SDK's TypedDict
    transform of the body (a third of the SDK's CPU per call). The transform only renames aliased keys and
    formats files and dates, and no Chat Completions request field has any of those: the request is JSON
    already (from the caller's body, the job row), so it is sent as it is. Same client, same POST, same
    options, same parse (cast to ChatCompletion), same errors (openai.APIStatusError and the rest)."""
    unknown = request.keys() - _BODY_FIELDS
    if unknown:
        raise TypeError(f"create() got unexpected keyword arguments {sorted(unknown)}")
    validate_response_format(request.get("response_format"))
    # The raw-response header makes `post` answer a LegacyAPIResponse, as `with_raw_response` does.
    raw = client.post(
        "/chat/completions",
        body={"model": model, **request},
        options=make_request_options(
            extra_headers={RAW_RESPONSE_HEADER: "true"},
            timeout=timeout_s if timeout_s else openai.NOT_GIVEN,
            security={"bearer_auth": True},
        ),
        cast_to=ChatCompletion,
    )
    return cast(LegacyAPIResponse[ChatCompletion], raw)


def chat(endpoint: Endpoint, request: dict[str, Any], *, timeout_s: float | None = None) -> ProviderResponse:
    """One Chat Completions call, with provider faults classified for the retry loop."""
    api_key = _api_key(endpoint)
    allow_private = settings.ARBITER_ALLOW_PRIVATE_PROVIDER_URLS
    started = time.perf_counter()
    try:
        deployment = _deployment_client(endpoint.base_url, api_key, endpoint.timeout_s, allow_private)
        deployment.pinned.target()  # checked before anything is sent (at most PIN_TTL_S old)
        # A shorter timeout (what is left of a step's budget) is the request's own: the cached client and
        # its pooled connections stay one per endpoint.
        raw = _create(deployment.client, endpoint.model, request, timeout_s)
    except (UnsafeAddress, httpx2.InvalidURL) as refused:
        raise ProviderError(f"deployment {endpoint.name}: refused: {refused}", retryable=False) from None
    except openai.RateLimitError as exc:
        raise ProviderError(str(exc), retryable=True, status=429, retry_after=_retry_after(exc)) from exc
    except openai.APIStatusError as exc:
        if 300 <= exc.status_code < 400:
            location = exc.response.headers.get("location", "") if exc.response is not None else ""
            raise ProviderError(
                f"deployment {endpoint.name}: the provider answered {exc.status_code}, a redirect to "
                f"{location[:200]!r}; Arbiter never follows a provider's redirects (correct the deployment's "
                "base URL if the provider has moved)",
                retryable=False,
                status=exc.status_code,
            ) from None
        retryable = exc.status_code >= 500 or exc.status_code in (408, 409)
        message = str(exc)
        if exc.status_code in REQUEST_REFUSED:
            message = f"the provider refused the request ({exc.status_code}): {_provider_message(exc)}"
        raise ProviderError(
            message, retryable=retryable, status=exc.status_code, retry_after=_retry_after(exc)
        ) from exc
    except openai.APITimeoutError as exc:
        raise ProviderError(f"timed out after {timeout_s or endpoint.timeout_s:.1f} s", retryable=True) from exc
    except openai.APIConnectionError as exc:
        raise ProviderError(f"connection failed: {exc}", retryable=True) from exc
    latency_ms = int((time.perf_counter() - started) * 1000)
    completion = raw.parse()
    request_id = raw.headers.get("x-request-id") or completion.id
    return ProviderResponse(completion=completion, request_id=request_id, latency_ms=latency_ms)


def list_models(base_url: str, *, api_key: str = "not-needed", timeout: float = 5.0) -> list[str]:
    return [model.id for model in client_for(base_url, api_key, timeout).models.list()]


HEALTH_CHECK_TIMEOUT_S = 1.0  # as controlplane.health's own checks


def model_server_check() -> str:
    """The health check of the configured model server (controlplane.health): its model list answers."""
    if not settings.ARBITER_MODELSERVER_URL:
        return "not configured"
    models = list_models(settings.ARBITER_MODELSERVER_URL, timeout=HEALTH_CHECK_TIMEOUT_S)
    return f"ok ({len(models)} models)"
