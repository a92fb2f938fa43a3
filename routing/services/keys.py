"""API keys: `arb_<prefix>_<secret>`. Shown once, stored as SHA-256 of the secret, looked up by prefix,
compared in constant time. The secret has 256 bits, so a fast hash is the right one (no KDF needed)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from audit import ledger
from audit.ledger import Actor
from routing.models import ApiKey, Application
from routing.models.applications import KEY_SCOPES

KEY_PREFIX = "arb_"


class InvalidScope(ValueError):
    pass


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(
    *,
    application: Application,
    scopes: list[str],
    actor: Actor,
    name: str = "",
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns it with its plaintext, which is never available again."""
    unknown = sorted(set(scopes) - set(KEY_SCOPES))
    if unknown:
        raise InvalidScope(f"unknown scopes {unknown}; allowed: {KEY_SCOPES}")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        key = ApiKey.objects.create(
            application=application,
            name=name,
            prefix=prefix,
            secret_hash=_hash(secret),
            scopes=sorted(set(scopes)),
            expires_at=expires_at,
        )
        ledger.append(
            "api_key.created",
            actor=actor,
            subject={"application": application.pk},
            body={
                "prefix": prefix,
                "scopes": key.scopes,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    return key, f"{KEY_PREFIX}{prefix}_{secret}"


def api_key_revoke(*, key: ApiKey, actor: Actor, reason: str = "") -> bool:
    """Revoke a live key; True when this call revoked it (False: it already was)."""
    with transaction.atomic():
        updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if updated:
            ledger.append(
                "api_key.revoked",
                actor=actor,
                subject={"application": key.application_id},
                body={"prefix": key.prefix, **({"reason": reason} if reason else {})},
            )
    return bool(updated)


def api_key_authenticate(raw: str) -> ApiKey | None:
    """The live key for a presented token, or None. Same work for a wrong secret as for a right one."""
    if not raw.startswith(KEY_PREFIX):
        return None
    prefix, _, secret = raw.removeprefix(KEY_PREFIX).partition("_")
    if not prefix or not secret:
        return None
    key = ApiKey.objects.select_related("application").filter(prefix=prefix).first()
    expected = key.secret_hash if key else _hash("decoy")
    if not hmac.compare_digest(expected, _hash(secret)) or key is None:
        return None
    now = timezone.now()
    if key.revoked_at or (key.expires_at and key.expires_at <= now) or not key.application.is_active:
        return None
    if not key.last_used_at or (now - key.last_used_at).total_seconds() > 60:
        # Written at most once a minute per key: a hot key must not turn every request into a write.
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key
