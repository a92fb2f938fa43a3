"""The process's Redis connection (breakers, latency windows, rate limits)."""

from __future__ import annotations

import functools

import redis
from django.conf import settings


@functools.cache
def get_redis() -> redis.Redis:
    # RESP2: nothing here needs RESP3, and redis-py 8's RESP3 handshake (maintenance notifications) was
    # seen failing with "I/O operation on closed file" under many request threads (bench/peer_bench.py).
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, protocol=2)
