"""Per-deployment circuit breakers whose state lives in Redis, shared by every worker on every machine.

closed → (N failures within the window) → open for `cooldown` seconds → half-open: one probe call
is let through; its success closes the breaker, its failure opens it again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from controlplane.redis_client import get_redis

FAILURE_THRESHOLD = 5
WINDOW_S = 30
COOLDOWN_S = 30


@dataclass(frozen=True)
class BreakerState:
    deployment: str
    state: str  # closed | open | half_open
    failures: int
    open_until: float | None


def _keys(deployment: str) -> tuple[str, str, str]:
    base = f"arbiter:breaker:{deployment}"
    return f"{base}:failures", f"{base}:open_until", f"{base}:probe"


class CircuitBreaker:
    def __init__(
        self,
        deployment: str,
        *,
        threshold: int = FAILURE_THRESHOLD,
        window_s: int = WINDOW_S,
        cooldown_s: float = COOLDOWN_S,
        client: redis.Redis | None = None,
    ):
        self.deployment = deployment
        self.threshold = threshold
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.redis = client or get_redis()
        self.failures_key, self.open_key, self.probe_key = _keys(deployment)

    def allow(self) -> bool:
        open_until = self.redis.get(self.open_key)
        if open_until is None:
            return True
        if time.time() < float(open_until):
            return False
        # Half-open: exactly one caller across all workers gets the probe.
        return bool(self.redis.set(self.probe_key, "1", nx=True, ex=max(1, int(self.cooldown_s))))

    def record_success(self) -> None:
        self.redis.delete(self.failures_key, self.open_key, self.probe_key)

    def record_failure(self) -> bool:
        """Count a failure; returns True when this failure opened the breaker."""
        pipe = self.redis.pipeline()
        pipe.incr(self.failures_key)
        pipe.expire(self.failures_key, self.window_s)
        pipe.get(self.open_key)
        failures, _, open_until = pipe.execute()
        half_open_probe_failed = open_until is not None
        if failures >= self.threshold or half_open_probe_failed:
            self.redis.set(
                self.open_key, str(time.time() + self.cooldown_s), ex=int(self.cooldown_s) + self.window_s
            )
            self.redis.delete(self.probe_key)
            return True
        return False

    def state(self) -> BreakerState:
        failures, open_until = self.redis.mget(self.failures_key, self.open_key)
        until = float(open_until) if open_until is not None else None
        if until is None:
            state = "closed"
        elif time.time() < until:
            state = "open"
        else:
            state = "half_open"
        return BreakerState(self.deployment, state, int(failures or 0), until)
