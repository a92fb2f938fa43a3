"""Observed latency per deployment: a rolling window of recent calls in Redis, read as p50/p95.

The router uses p95 to skip deployments too slow for a job's latency budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.redis_client import get_redis

WINDOW = 200  # most recent calls kept per deployment


@dataclass(frozen=True)
class LatencyStats:
    samples: int
    p50_ms: float | None
    p95_ms: float | None


def _key(deployment: str) -> str:
    return f"arbiter:latency:{deployment}"


def record(deployment: str, latency_ms: int) -> None:
    pipe = get_redis().pipeline(transaction=False)
    pipe.lpush(_key(deployment), latency_ms)
    pipe.ltrim(_key(deployment), 0, WINDOW - 1)
    pipe.execute()


def _percentile(ordered: list[int], share: float) -> float:
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return float(ordered[index])


def stats_for(deployments: list[str]) -> dict[str, LatencyStats]:
    pipe = get_redis().pipeline(transaction=False)
    for name in deployments:
        pipe.lrange(_key(name), 0, WINDOW - 1)
    result = {}
    for name, raw in zip(deployments, pipe.execute(), strict=True):
        samples = sorted(int(value) for value in raw)
        if not samples:
            result[name] = LatencyStats(0, None, None)
        else:
            result[name] = LatencyStats(len(samples), _percentile(samples, 0.5), _percentile(samples, 0.95))
    return result
