"""API keys: `arb_<prefix>_<secret>`. Shown once, stored as SHA-256 of the secret, looked up by prefix,
compared in constant time. The secret has 256 bits, so a fast hash is the right one (no KDF needed)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser, User
from django.db import transaction
from django.utils import timezone

from audit import ledger
from audit.ledger import Actor
from controlplane.roles import Role, has_role
from routing.models import ApiKey, Application
from routing.models.applications import ADMIN_SCOPES, KEY_SCOPES, PLATFORM_ADMIN
from routing.services import key_cache

KEY_PREFIX = "arb_"


class InvalidScope(ValueError):
    pass


class KeyRefused(Exception):
    """The person (or the key minting for them) may not hold such a key; the message says why."""


def token_hash(secret: str) -> str:
    """What is stored of a key's or a personal token's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def may_administer(person: AbstractBaseUser | None) -> bool:
    """Administration through a key is bounded by its owner's current roles, checked at every use."""
    return person is not None and has_role(person, Role.POLICY_ADMIN)


def _check_minting(
    *,
    application: Application,
    scopes: set[str],
    created_by: User | None,
    minted_with: ApiKey | None,
    expires_at: datetime | None,
) -> User:
    """The key's owner, once every rule of minting holds; `KeyRefused` says which does not."""
    if created_by is None or not created_by.is_active:
        raise KeyRefused("a key acts for the person who mints it: it needs an active person as its owner")
    if scopes & set(ADMIN_SCOPES) and not may_administer(created_by):
        raise KeyRefused(
            f"{created_by.get_username()} does not hold the policy-admin role: an administrative key "
            f"({', '.join(sorted(scopes & set(ADMIN_SCOPES)))}) can only be minted by and for a policy admin"
        )
    if minted_with is None or PLATFORM_ADMIN in minted_with.scopes:
        return created_by
    if minted_with.application_id != application.pk:
        raise KeyRefused("a key can mint keys only for its own application")
    wider = sorted(scopes - set(minted_with.scopes))
    if wider:
        raise KeyRefused(
            f"a key cannot mint a key wider than itself: this key lacks {', '.join(wider)} "
            f"(its scopes: {', '.join(minted_with.scopes)})"
        )
    if minted_with.expires_at and (expires_at is None or expires_at > minted_with.expires_at):
        raise KeyRefused(
            "a key cannot mint a key that outlives it: give an expiry no later than "
            f"{minted_with.expires_at:%Y-%m-%d %H:%M} UTC"
        )
    return created_by


def api_key_create(
    *,
    application: Application,
    scopes: list[str],
    created_by: User | None,
    actor: Actor | None = None,
    minted_with: ApiKey | None = None,
    name: str = "",
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key acting for `created_by`; returns it with its plaintext, which is never available again.

    `minted_with` is the key that asked for it over the API: the new key is then bounded by that key
    (its application, its scopes) and the ledger names it."""
    unknown = sorted(set(scopes) - set(KEY_SCOPES))
    if unknown:
        raise InvalidScope(f"unknown scopes {unknown}; allowed: {KEY_SCOPES}")
    owner = _check_minting(
        application=application,
        scopes=set(scopes),
        created_by=created_by,
        minted_with=minted_with,
        expires_at=expires_at,
    )
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        key = ApiKey.objects.create(
            application=application,
            name=name,
            prefix=prefix,
            secret_hash=token_hash(secret),
            scopes=sorted(set(scopes)),
            expires_at=expires_at,
            created_by=owner,
        )
        ledger.append(
            "api_key.created",
            actor=actor or Actor.user(owner.pk),
            subject={"application": application.pk},
            body={
                "prefix": prefix,
                "scopes": key.scopes,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "owner": owner.pk,
                "via_key": minted_with.prefix if minted_with else None,
            },
        )
    return key, f"{KEY_PREFIX}{prefix}_{secret}"


def api_key_revoke(*, key: ApiKey, actor: Actor, revoked_with: ApiKey | None = None, reason: str = "") -> bool:
    """Revoke a live key; True when this call revoked it (False: it already was)."""
    with transaction.atomic():
        updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if updated:
            key_cache.keys_changed()
            ledger.append(
                "api_key.revoked",
                actor=actor,
                subject={"application": key.application_id},
                body={
                    "prefix": key.prefix,
                    **({"via_key": revoked_with.prefix} if revoked_with else {}),
                    **({"reason": reason} if reason else {}),
                },
            )
    return bool(updated)


def api_key_authenticate(raw: str) -> ApiKey | None:
    """The live key for a presented token, or None. Same work for a wrong secret as for a right one. The row
    comes from this process's cache of live keys unless a key, application or person changed since it was
    read (routing.services.key_cache); liveness and the secret are checked on every call either way."""
    if not raw.startswith(KEY_PREFIX):
        return None
    prefix, _, secret = raw.removeprefix(KEY_PREFIX).partition("_")
    if not prefix or not secret:
        return None
    version = key_cache.keys_version()  # read before the row (routing.services.key_cache)
    key = key_cache.cached_key(prefix, version)
    if key is None:
        key = ApiKey.objects.select_related("application", "created_by").filter(prefix=prefix).first()
        if key is not None and _live(key, timezone.now()):
            key_cache.remember(key, version)
    expected = key.secret_hash if key else token_hash("decoy")
    if not hmac.compare_digest(expected, token_hash(secret)) or key is None:
        return None
    now = timezone.now()
    if not _live(key, now):
        return None
    if not key.last_used_at or (now - key.last_used_at).total_seconds() > 60:
        # Written at most once a minute per key: a hot key must not turn every request into a write.
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key_cache.note_used(key.prefix, now)
    return key


def _live(key: ApiKey, now: datetime) -> bool:
    if key.revoked_at or (key.expires_at and key.expires_at <= now) or not key.application.is_active:
        return False
    # The key acts for its owner: a deactivated person's keys stop with them.
    return key.created_by is None or key.created_by.is_active
