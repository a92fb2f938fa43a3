"""The one retry loop around provider calls: retries with backoff and jitter that honour Retry-After,
a circuit breaker per deployment, and fallback to the tier's next deployment.

The SDK's own retries are off (routing.execute.providers), so every call made is counted here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings

from routing.decide import parameters as caller_parameters
from routing.execute import latency
from routing.execute.breaker import CircuitBreaker
from routing.execute.providers import REQUEST_REFUSED, Endpoint, ProviderError, ProviderResponse, chat
from routing.models import ModelDeployment

# Outcomes that say the provider is failing, not the request: a tier whose every deployment ends so is down.
PROVIDER_FAULTS = frozenset({"error", "rate_limited", "timeout", "breaker_open", "out_of_time"})


@dataclass(frozen=True)
class CallAttempt:
    deployment: str
    outcome: str  # ok | error | rate_limited | timeout | breaker_open | refused | out_of_time
    status: int | None = None
    error: str = ""
    latency_ms: int = 0
    waited_s: float = 0.0


@dataclass
class CallResult:
    deployment: ModelDeployment
    response: ProviderResponse
    attempts: list[CallAttempt] = field(default_factory=list)
    dropped: tuple[str, ...] = ()  # the caller's parameters this deployment does not take, so not sent

    def attempts_record(self) -> list[dict[str, Any]]:
        return [asdict(attempt) for attempt in self.attempts]


class TierUnavailable(Exception):
    """Every deployment of the tier failed or was skipped; `attempts` says how."""

    def __init__(self, tier: str, attempts: list[CallAttempt]):
        last = attempts[-1].error if attempts else "no deployment to call"
        super().__init__(f"tier {tier}: every deployment failed ({len(attempts)} attempts; last: {last})")
        self.tier = tier
        self.attempts = attempts

    @property
    def request_refused(self) -> CallAttempt | None:
        """The last attempt when every deployment refused the request itself (a 400, 413, 422: the
        caller's request is wrong, not the provider down), else None."""
        if self.attempts and all(
            attempt.outcome == "refused" and attempt.status in REQUEST_REFUSED for attempt in self.attempts
        ):
            return self.attempts[-1]
        return None

    @property
    def tier_down(self) -> bool:
        """The tier is down, not this request: every deployment tried is behind a breaker that is not closed
        (open, or half-open with another caller's probe in flight) or failed in this step for the provider's
        reasons (errors, hangs, rate limits; its breaker may not have counted enough failures to open yet).
        A half-open breaker counts: jobs waiting for a tier wake together at its cooldown's end, and only one
        of them gets the probe — the others must wait again, not fail."""
        by_deployment: dict[str, list[CallAttempt]] = {}
        for attempt in self.attempts:
            by_deployment.setdefault(attempt.deployment, []).append(attempt)
        return bool(by_deployment) and all(
            _breaker(name).state().state != "closed" or all(a.outcome in PROVIDER_FAULTS for a in tried)
            for name, tried in by_deployment.items()
        )

    def retry_in_s(self) -> float:
        """Seconds until the first of the tier's open breakers lets a probe through (0: none is open now)."""
        now = time.time()
        until = [_breaker(name).state().open_until for name in {attempt.deployment for attempt in self.attempts}]
        return max(0.0, min((moment - now for moment in until if moment is not None and moment > now), default=0.0))


def _breaker(deployment: str) -> CircuitBreaker:
    return CircuitBreaker(
        deployment,
        threshold=settings.ARBITER_BREAKER_THRESHOLD,
        cooldown_s=settings.ARBITER_BREAKER_COOLDOWN_S,
        window_s=settings.ARBITER_BREAKER_WINDOW_S,
    )


def endpoint_for(deployment: ModelDeployment) -> Endpoint:
    return Endpoint(
        name=deployment.name,
        base_url=deployment.base_url,
        model=deployment.model,
        api_key_env=deployment.api_key_env,
        timeout_s=min(deployment.timeout_s, settings.PROVIDER_TIMEOUT_S),
    )


MIN_CALL_S = 0.05  # less than this left of a step's budget is no time for a call


def _backoff(try_number: int) -> float:
    # Full jitter (AWS architecture blog): spreads the retries of many workers after a shared fault.
    ceiling = settings.ARBITER_RETRY_BASE_S * (2**try_number)
    return random.uniform(0, min(ceiling, settings.ARBITER_RETRY_MAX_S))


def _classify(error: ProviderError) -> str:
    if error.status == 429:
        return "rate_limited"
    if error.status is None and "timed out" in str(error):
        return "timeout"
    return "error" if error.retryable else "refused"


def call_tier(
    tier: str,
    deployments: Sequence[ModelDeployment],
    request: dict[str, Any],
    parameters: dict[str, Any] | None = None,
    *,
    budget_s: float | None = None,
) -> CallResult:
    """`request` is Arbiter's own; the caller's `parameters` go to each deployment as far as it takes them.

    Every try, wait and fallback ends within `budget_s` (ARBITER_STEP_BUDGET_S unless given): a call gets
    what is left of it as its timeout, and none is started once it is spent."""
    attempts: list[CallAttempt] = []
    deadline = time.monotonic() + (settings.ARBITER_STEP_BUDGET_S if budget_s is None else budget_s)
    for position, deployment in enumerate(deployments):
        fallback_left = position < len(deployments) - 1
        forwarded = caller_parameters.for_deployment(request, parameters or {}, deployment.parameters)
        breaker = _breaker(deployment.name)
        endpoint = endpoint_for(deployment)
        waited = 0.0
        for try_number in range(settings.ARBITER_TRIES_PER_DEPLOYMENT):
            left = deadline - time.monotonic()
            if left <= MIN_CALL_S:
                spent = CallAttempt(deployment.name, "out_of_time", error="the step's time budget is spent")
                attempts.append(spent)
                raise TierUnavailable(tier, attempts)
            if not breaker.allow():
                attempts.append(CallAttempt(deployment.name, "breaker_open", error="circuit breaker open"))
                break
            try:
                response = chat(endpoint, forwarded.request, timeout_s=min(endpoint.timeout_s, left))
            except ProviderError as error:
                outcome = _classify(error)
                attempts.append(
                    CallAttempt(deployment.name, outcome, error.status, str(error)[:500], waited_s=waited)
                )
                if outcome in ("error", "timeout"):
                    breaker.record_failure()
                if outcome == "refused":
                    break  # the request itself is wrong for this deployment; another may take it
                if outcome == "timeout" and fallback_left:
                    break  # a hang is likely to hang again: the step's budget is better spent on the next
                wait = error.retry_after if error.retry_after is not None else _backoff(try_number)
                if (
                    wait > settings.ARBITER_MAX_RETRY_AFTER_S
                    or wait >= deadline - time.monotonic()
                    or try_number + 1 == settings.ARBITER_TRIES_PER_DEPLOYMENT
                ):
                    break  # waiting that long is worse than the tier's next deployment
                time.sleep(wait)
                waited = wait
                continue
            breaker.record_success()
            latency.record(deployment.name, response.latency_ms)
            attempts.append(
                CallAttempt(deployment.name, "ok", 200, latency_ms=response.latency_ms, waited_s=waited)
            )
            return CallResult(deployment=deployment, response=response, attempts=attempts, dropped=forwarded.dropped)
    raise TierUnavailable(tier, attempts)
