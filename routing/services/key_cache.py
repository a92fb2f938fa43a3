"""Live API keys remembered in process, so that a request does not read its key, application and owner from
Postgres every time (issue #15: the key's SELECT was 9-16% of a request's wall time).

Revocation still takes effect at once, in every process: anything that can turn a live key dead (the key
revoked, changed or deleted; its application or owner saved or deleted) sets a new random token in Redis
(`KEYS_VERSION`), right away and again once its transaction commits. Every lookup reads that token (one
Redis GET) and uses an entry only if it was loaded under the same token; an entry loaded before the change
is reloaded from Postgres. The token is read before the row, so a load racing a change is stored under the
old token and never used. When Redis cannot be read the cache is not used at all (Postgres decides), and an
entry is never older than `MAX_AGE_S` (a bound should a change's token fail to be written).

Only the rows are shared between requests: each lookup hands out its own copies of the key, application
and owner, so whatever a request caches on them (the owner's roles, for one) lives one request."""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import redis
from django.db import transaction

from controlplane.redis_client import get_redis
from routing.models import ApiKey

logger = logging.getLogger(__name__)

KEYS_VERSION = "arbiter:api-keys:version"
MAX_AGE_S = 60.0
MAX_ENTRIES = 10_000



@dataclass
class _Entry:
    version: bytes
    loaded: float
    key: ApiKey  # never handed out: lookups get copies


_entries: dict[str, _Entry] = {}
_lock = threading.Lock()


def keys_version() -> bytes | None:
    """The current token (empty: never set), or None when Redis cannot be read (then the cache is not used)."""
    try:
        token = get_redis().get(KEYS_VERSION)
        return token if isinstance(token, bytes) else b""
    except redis.RedisError:
        logger.warning("API key cache: Redis unreadable; keys are read from the database", exc_info=True)
        return None


def _copy(key: ApiKey) -> ApiKey:
    """A copy of the key whose application and owner are copies too (a model's copy has its own state)."""
    fresh = copy.copy(key)
    fresh.application = copy.copy(key.application)
    fresh.created_by = copy.copy(key.created_by) if key.created_by is not None else None
    return fresh


def cached_key(prefix: str, version: bytes | None) -> ApiKey | None:
    """A copy of the cached key for `prefix`, if it was loaded under `version` and is fresh enough."""
    if version is None:
        return None
    entry = _entries.get(prefix)
    if entry is None or entry.version != version or time.monotonic() - entry.loaded > MAX_AGE_S:
        return None
    return _copy(entry.key)


def remember(key: ApiKey, version: bytes | None) -> None:
    """Keep a live key read from the database under the token read before that read."""
    if version is None:
        return
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[key.prefix] = _Entry(version=version, loaded=time.monotonic(), key=_copy(key))


def note_used(prefix: str, when: datetime) -> None:
    """The key's `last_used_at` was just written: the cached row says so too (it is written once a minute)."""
    entry = _entries.get(prefix)
    if entry is not None:
        entry.key.last_used_at = when


def keys_changed() -> None:
    """Something that can end a key's life changed: every process reloads its keys. Called in the changing
    transaction (now, and again when it commits)."""
    _bump()
    transaction.on_commit(_bump)


def _bump() -> None:
    with _lock:
        _entries.clear()
    try:
        get_redis().set(KEYS_VERSION, uuid.uuid4().hex)
    except redis.RedisError:
        # Other processes keep their entries until MAX_AGE_S; their lookups fall back to the database
        # while Redis cannot be read.
        logger.error("API key cache: could not publish a key change to other processes", exc_info=True)


def _changed(sender: type, **kwargs: object) -> None:
    if kwargs.get("update_fields") == frozenset({"last_login"}):
        return  # a sign-in (Django saves only last_login): nothing a key's life depends on
    keys_changed()


def connect_signals() -> None:
    """Saves and deletes of keys, applications and people (routing.apps); `.update()` calls that can end a
    key call `keys_changed` themselves (api_key_revoke)."""
    from django.contrib.auth import get_user_model
    from django.db.models.signals import post_delete, post_save

    from routing.models import Application

    for model in (ApiKey, Application, get_user_model()):
        post_save.connect(_changed, sender=model, dispatch_uid=f"key-cache-save-{model._meta.label}")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"key-cache-delete-{model._meta.label}")
