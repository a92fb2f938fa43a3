"""Per-key rate limit: a fixed one-minute window counted atomically in Redis (one Lua script)."""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings
from rest_framework.throttling import BaseThrottle

from routing.models import ApiKey
from routing.redis_client import get_redis

logger = logging.getLogger(__name__)

WINDOW_S = 60
# INCR and EXPIRE in one script: no window can be left without an expiry by a crash between the two.
_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('TTL', KEYS[1])}
"""


def rate_limit_hit(key_prefix: str, limit: int) -> tuple[bool, int]:
    """Count one request for the key; (allowed, seconds until the window resets)."""
    window = int(time.time() // WINDOW_S)
    client = get_redis()
    count, ttl = client.eval(_COUNT, 1, f"arbiter:ratelimit:{key_prefix}:{window}", WINDOW_S + 1)
    return int(count) <= limit, max(1, int(ttl))


class ApiKeyRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self.retry_after: int | None = None

    def allow_request(self, request, view) -> bool:
        limit = settings.ARBITER_RATE_LIMIT_PER_MINUTE
        if not isinstance(request.auth, ApiKey) or limit <= 0:
            return True
        try:
            allowed, retry_after = rate_limit_hit(request.auth.prefix, limit)
        except redis.RedisError:
            # Fail open: losing the limiter for a moment must not turn every request into an error.
            logger.warning("rate limiter unavailable; request allowed", exc_info=True)
            return True
        self.retry_after = retry_after
        return allowed

    def wait(self) -> float | None:
        return self.retry_after
