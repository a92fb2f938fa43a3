"""Per-key rate limit: a fixed one-minute window counted atomically in Redis (one Lua script); and the
bounds on concurrent synchronous completions (below)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.conf import settings
from rest_framework.throttling import BaseThrottle

from controlplane.redis_client import get_redis
from routing.models import ApiKey

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


# --- Concurrent synchronous calls ------------------------------------------------------------------
# `/v1/chat/completions` holds a web thread for the whole job. Slots are bounded per key and across
# every web process (Redis sorted sets: member = one call's token, score = its lease's end) and per
# process (a semaphore one smaller than the thread count, so /healthz and the jobs API always find a
# thread). A lease is renewed while its call runs (one heartbeat thread per process); a process that
# dies stops renewing, and its slots expire within LEASE_S instead of leaking.

LEASE_S = 30
RENEW_EVERY_S = 10
# KEYS: the slot sets; ARGV: now (ms), lease end (ms), token, then one limit per key. Returns 0 when a
# slot was taken in every set, else the 1-based index of the first set that is full. Atomic.
_ACQUIRE = """
local now, expiry, token = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[3 + i]) then return i end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, expiry, token)
  redis.call('PEXPIRE', key, expiry - now + 1000)
end
return 0
"""
_RENEW = """
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', ARGV[1], ARGV[2])
  redis.call('PEXPIRE', key, tonumber(ARGV[1]) - tonumber(ARGV[3]) + 1000)
end
return 0
"""


class SyncCallsExceeded(Exception):
    """Beyond one of the bounds; `limit` names the setting, `retry_after` is in seconds."""

    def __init__(self, message: str, *, limit: str, retry_after: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after = retry_after


class SyncCallsUnavailable(Exception):
    """The shared counter (Redis) cannot be reached: no call may start unbounded."""


_held: dict[str, tuple[str, ...]] = {}  # token -> its slot sets, renewed by the heartbeat
_held_lock = threading.Lock()
_heartbeat: threading.Thread | None = None


class _SizedSemaphore:
    """A process-wide semaphore whose size follows a setting (tests change it)."""

    def __init__(self, setting: str) -> None:
        self.setting = setting
        self.size = 0
        self.semaphore: threading.BoundedSemaphore | None = None

    def get(self) -> threading.BoundedSemaphore:
        size = getattr(settings, self.setting)
        with _held_lock:
            if self.semaphore is None or self.size != size:
                self.semaphore, self.size = threading.BoundedSemaphore(size), size
            return self.semaphore


_process_slots = _SizedSemaphore("ARBITER_SYNC_CALLS_PER_PROCESS")
_approval_waits = _SizedSemaphore("ARBITER_APPROVAL_WAITS_PER_PROCESS")


def _renew_forever() -> None:
    while True:
        time.sleep(RENEW_EVERY_S)
        with _held_lock:
            held = list(_held.items())
        now_ms = int(time.time() * 1000)
        for token, keys in held:
            try:
                get_redis().eval(_RENEW, len(keys), *keys, now_ms + LEASE_S * 1000, token, now_ms)
            except redis.RedisError:
                logger.warning("could not renew a synchronous call's lease", exc_info=True)


def _ensure_heartbeat() -> None:
    global _heartbeat
    with _held_lock:
        if _heartbeat is None or not _heartbeat.is_alive():
            _heartbeat = threading.Thread(target=_renew_forever, name="arbiter-sync-leases", daemon=True)
            _heartbeat.start()


@contextmanager
def approval_wait_slot() -> Iterator[None]:
    """Hold one of this process's approval-wait slots and one of its synchronous slots, or raise.

    A request waiting on a person's decision (routing.api.openai, `x-arbiter-wait-for-approval`) occupies
    a thread of this process for minutes but runs no model call: it takes no slot of its key's or the
    installation's, and at most ARBITER_APPROVAL_WAITS_PER_PROCESS of the process's synchronous slots,
    so waiting agents never use up the threads the process's completions run in."""
    waits = _approval_waits.get()
    if not waits.acquire(blocking=False):
        raise SyncCallsExceeded(
            f"this server process already has its limit of {settings.ARBITER_APPROVAL_WAITS_PER_PROCESS} requests "
            "waiting on approvals (ARBITER_APPROVAL_WAITS_PER_PROCESS)",
            limit="ARBITER_APPROVAL_WAITS_PER_PROCESS",
            retry_after=settings.ARBITER_SYNC_RETRY_AFTER_S,
        )
    try:
        with process_slot():
            yield
    finally:
        waits.release()


@contextmanager
def process_slot() -> Iterator[None]:
    """Hold one of this process's synchronous slots (its web threads less one) for the block, or raise."""
    process_slots = _process_slots.get()
    if not process_slots.acquire(blocking=False):
        raise SyncCallsExceeded(
            f"this server process is running its limit of {settings.ARBITER_SYNC_CALLS_PER_PROCESS} synchronous "
            "completions (ARBITER_SYNC_CALLS_PER_PROCESS); retry shortly, or submit the job to /api/v1/jobs",
            limit="ARBITER_SYNC_CALLS_PER_PROCESS",
            retry_after=settings.ARBITER_SYNC_RETRY_AFTER_S,
        )
    try:
        yield
    finally:
        process_slots.release()


@contextmanager
def sync_call_slot(key: ApiKey) -> Iterator[None]:
    """Hold one synchronous-call slot for `key` for the duration of the block, or raise."""
    retry_after = settings.ARBITER_SYNC_RETRY_AFTER_S
    with process_slot():
        keys = (f"arbiter:sync:key:{key.prefix}", "arbiter:sync:total")
        limits = (settings.ARBITER_SYNC_CALLS_PER_KEY, settings.ARBITER_SYNC_CALLS_TOTAL)
        token = uuid.uuid4().hex
        now_ms = int(time.time() * 1000)
        try:
            full = int(get_redis().eval(_ACQUIRE, len(keys), *keys, now_ms, now_ms + LEASE_S * 1000, token, *limits))
        except redis.RedisError as error:
            raise SyncCallsUnavailable(f"the concurrency limiter is unavailable ({type(error).__name__})") from error
        if full == 1:
            raise SyncCallsExceeded(
                f"this key already has {limits[0]} synchronous completions running (ARBITER_SYNC_CALLS_PER_KEY); "
                "retry when one has finished, or submit the job to /api/v1/jobs",
                limit="ARBITER_SYNC_CALLS_PER_KEY",
                retry_after=retry_after,
            )
        if full == 2:
            raise SyncCallsExceeded(
                f"Arbiter is running its limit of {limits[1]} synchronous completions (ARBITER_SYNC_CALLS_TOTAL); "
                "retry shortly, or submit the job to /api/v1/jobs",
                limit="ARBITER_SYNC_CALLS_TOTAL",
                retry_after=retry_after,
            )
        with _held_lock:
            _held[token] = keys
        _ensure_heartbeat()
        try:
            yield
        finally:
            with _held_lock:
                _held.pop(token, None)
            try:
                release = get_redis().pipeline(transaction=False)  # one round trip for every set
                for name in keys:
                    release.zrem(name, token)
                release.execute()
            except redis.RedisError:
                logger.warning("could not release a synchronous call's slot; its lease expires", exc_info=True)
