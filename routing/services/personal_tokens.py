"""A person's tokens for the review API: `arbp_<prefix>_<secret>`, shown once, stored as the SHA-256 of the
secret (as API keys are: routing.services.keys), looked up by prefix and compared in constant time.

A token is its person: what it may decide is what that person may decide at the moment of use (their
roles, the four-eyes rules of the pending request), narrowed by the token's scopes. It always expires
(at most ARBITER_PERSONAL_TOKEN_MAX_DAYS), and stops at once when revoked or when its person is deactivated.
Minting and revoking are ledger events in the same transaction."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from audit import ledger
from audit.ledger import Actor
from routing.models import PersonalToken
from routing.models.tokens import PERSONAL_SCOPES
from routing.services.keys import token_hash

TOKEN_PREFIX = "arbp_"  # noqa: S105 (the public prefix, not a secret)


class TokenRefused(ValueError):
    """The token asked for cannot be minted; the message says why."""


def personal_token_create(
    *, user: User, name: str, scopes: list[str], expires_at: datetime
) -> tuple[PersonalToken, str]:
    """Mint a token for `user` (who asks for it themselves); returns it with its plaintext, never shown again."""
    unknown = sorted(set(scopes) - set(PERSONAL_SCOPES))
    if unknown or not scopes:
        raise TokenRefused(f"scopes must be some of {', '.join(PERSONAL_SCOPES)}; got {', '.join(unknown) or 'none'}")
    now = timezone.now()
    longest = timedelta(days=settings.ARBITER_PERSONAL_TOKEN_MAX_DAYS)
    if not now < expires_at <= now + longest:
        raise TokenRefused(
            f"a personal token expires after now and within {settings.ARBITER_PERSONAL_TOKEN_MAX_DAYS} days"
        )
    if not user.is_active:
        raise TokenRefused("a deactivated person cannot hold a token")
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with transaction.atomic():
        token = PersonalToken.objects.create(
            user=user,
            name=name,
            prefix=prefix,
            secret_hash=token_hash(secret),
            scopes=sorted(set(scopes)),
            expires_at=expires_at,
        )
        ledger.append(
            "personal_token.created",
            actor=Actor.user(user.pk),
            subject={},
            body={"prefix": prefix, "owner": user.pk, "scopes": token.scopes, "expires_at": expires_at.isoformat()},
        )
    return token, f"{TOKEN_PREFIX}{prefix}_{secret}"


def personal_token_revoke(*, token: PersonalToken, actor: Actor) -> bool:
    """Revoke a live token; True when this call revoked it (False: it already was)."""
    with transaction.atomic():
        updated = PersonalToken.objects.filter(pk=token.pk, revoked_at=None).update(revoked_at=timezone.now())
        if updated:
            ledger.append(
                "personal_token.revoked", actor=actor, subject={}, body={"prefix": token.prefix, "owner": token.user_id}
            )
    return bool(updated)


def personal_token_authenticate(raw: str) -> PersonalToken | None:
    """The live token for a presented `arbp_…` string, or None. Same work for a wrong secret as a right one."""
    prefix, _, secret = raw.removeprefix(TOKEN_PREFIX).partition("_")
    if not raw.startswith(TOKEN_PREFIX) or not prefix or not secret:
        return None
    token = PersonalToken.objects.select_related("user").filter(prefix=prefix).first()
    expected = token.secret_hash if token else token_hash("decoy")
    if not hmac.compare_digest(expected, token_hash(secret)) or token is None:
        return None
    now = timezone.now()
    if token.revoked_at or token.expires_at <= now or not token.user.is_active:
        return None
    if not token.last_used_at or (now - token.last_used_at).total_seconds() > 60:
        PersonalToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
