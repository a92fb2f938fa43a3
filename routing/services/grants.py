"""Approval grants: issued when people approve a held answer's tool calls; redeemed once by the application.

A grant is the canonical JSON of its claims (`audit.ledger.canonical_json`: sorted keys, no whitespace,
UTF-8), signed with the ledger's Ed25519 key (`audit.checkpoints.sign`, the key that signs checkpoints).
The application receives it as a token, `<base64url(claims)>.<base64url(signature)>` without padding,
checks it offline (routing/api/GRANTS.md: the verifier there is tested as printed) and redeems it once,
with the tool and arguments it is about to execute, before executing them. Everything the application
could change after the approval is bound: the tool, and the SHA-256 of the canonical arguments, so an
argument changed by one byte's meaning fails closed.

Canonical arguments (`canonical_arguments`): the arguments as a JSON value (an OpenAI-style JSON text is
parsed first; text that is not JSON stays a string), every float with an integral value written as an
integer (50.0 and 50 are the same amount), then canonical_json. This is RFC 8785 (JCS) for objects,
arrays, strings, booleans, null, integers and decimal fractions; it differs from JCS only in the order
of keys outside the Basic Multilingual Plane (code points here, UTF-16 units there) and in exponent
notation (1e-05 here, 0.00001 there).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from audit import checkpoints, ledger
from audit.ledger import Actor, canonical_json, format_time
from routing.models import ApprovalGrant, ApprovalRequest, Job

GRANT_TYPE = "arbiter.approval_grant.v1"


class GrantRefused(Exception):
    """The redemption is refused; the message is for a person, `code` for the client (stable)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class GrantNotFound(GrantRefused):
    def __init__(self, grant_id: object) -> None:
        super().__init__(f"no grant {str(grant_id)[:80]!r}", code="not_found")


def canonical_arguments(arguments: Any) -> bytes:
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):
            arguments = json.loads(arguments)
    return canonical_json(_integral_floats_as_int(arguments)).encode("utf-8")


def arguments_sha256(arguments: Any) -> str:
    return hashlib.sha256(canonical_arguments(arguments)).hexdigest()


def _integral_floats_as_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral_floats_as_int(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_int(item) for item in value]
    return value


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def grant_token(*, message: str, signature: str) -> str:
    """The grant as the application holds it, from its signed message and (base64) signature."""
    return f"{_b64url(message.encode('utf-8'))}.{_b64url(base64.b64decode(signature))}"


def grant_as_given(*, message: str, signature: str, redeemed_at: object) -> dict[str, Any]:
    """A grant as the application reads it beside the released answer (the jobs API, chat completions)."""
    claims = json.loads(message)
    return {
        "id": claims["id"],
        "tool_call_id": claims["tool_call_id"],
        "tool": claims["tool"],
        "arguments_sha256": claims["arguments_sha256"],
        "expires_at": claims["expires_at"],
        "redeemed_at": redeemed_at,
        "token": grant_token(message=message, signature=signature),
    }


def grants_issue(*, job: Job, request: ApprovalRequest, approvers: list[User], actor: Actor) -> list[ApprovalGrant]:
    """One grant per tool call of the answer that `request`'s approval releases, with its `grant.issued`
    events: called inside the transaction that records the deciding approval, so a released tool call
    and its grant commit together or not at all. An answer without tool calls gets none."""
    calls = ((job.result or {}).get("output") or {}).get("tool_calls") or []
    if not calls:
        return []
    issued_at = timezone.now()
    expires_at = issued_at + timedelta(seconds=settings.ARBITER_GRANT_TTL_S)
    version = job.policy_version
    grants, events = [], []
    for index, call in enumerate(calls):
        grant = ApprovalGrant(
            application_id=job.application_id,
            job=job,
            approval=request,
            tool_call_index=index,
            # The id the chat completion gives the call (routing.api.openai.chat_completion).
            tool_call_id=str(call.get("id") or f"call_{index}")[:200],
            tool=str(call.get("name", ""))[:200],
            arguments_sha256=arguments_sha256(call.get("arguments", {})),
            issued_at=issued_at,
            expires_at=expires_at,
        )
        grant.message = canonical_json(
            {
                "type": GRANT_TYPE,
                "id": str(grant.id),
                "application": job.application.slug,
                "job": str(job.pk),
                "approval": request.pk,
                "tool_call_id": grant.tool_call_id,
                "tool": grant.tool,
                "arguments_sha256": grant.arguments_sha256,
                "policy_version": f"{version.policy.name}@v{version.number}",
                "policy_version_sha256": version.sha256,
                "approvers": sorted(str(person.pk) for person in approvers),
                "issued_at": format_time(issued_at),
                "expires_at": format_time(expires_at),
                "nonce": secrets.token_hex(16),
            }
        )
        grant.signature, grant.public_key = checkpoints.sign(grant.message)
        grants.append(grant)
        events.append(
            ledger.Entry(
                "grant.issued",
                actor,
                {"job": job.pk, "application": job.application_id, "approval": request.pk},
                {
                    "grant": str(grant.id),
                    "tool_call_id": grant.tool_call_id,
                    "tool": grant.tool,
                    "arguments_sha256": grant.arguments_sha256,
                    "expires_at": expires_at.isoformat(),
                },
            )
        )
    ApprovalGrant.objects.bulk_create(grants)
    ledger.append_many(events)
    return grants


@dataclass(frozen=True)
class Redemption:
    grant: ApprovalGrant
    ledger_event_id: int


def grant_redeem(
    *, application_id: int, grant_id: uuid.UUID, token: str, tool: str, arguments: Any, key_prefix: str
) -> Redemption:
    """Redeem the application's grant once, for exactly the tool call it was issued for.

    Refused (GrantRefused, with the reason's code) when the token is not the grant Arbiter signed, the
    tool or the arguments differ, it was redeemed already or it has expired; a grant of another
    application is not found. A redemption and a refusal are both ledger events, written with the
    claim in one transaction; the claim is a conditional UPDATE, so of concurrent redemptions one wins."""
    grant = ApprovalGrant.objects.filter(pk=grant_id, application_id=application_id).first()
    if grant is None:
        raise GrantNotFound(grant_id)
    presented = arguments_sha256(arguments)
    refusal = _mismatch(grant, token, tool, presented)
    actor = Actor.application(application_id)
    subject = {"job": grant.job_id, "application": application_id, "approval": grant.approval_id}
    with transaction.atomic():
        if refusal is None:
            refusal = _claim(grant, key_prefix)
        if refusal is not None:
            ledger.append(
                "grant.refused",
                actor=actor,
                subject=subject,
                # Not the presented tool name: it is the client's free text, and the ledger keeps nothing personal.
                body={"grant": str(grant.pk), "code": refusal.code, "arguments_sha256": presented},
            )
        else:
            event = ledger.append(
                "grant.redeemed",
                actor=actor,
                subject=subject,
                body={"grant": str(grant.pk), "tool": grant.tool, "arguments_sha256": presented},
            )
    if refusal is not None:
        raise refusal
    return Redemption(grant=grant, ledger_event_id=event.id)


def _mismatch(grant: ApprovalGrant, token: str, tool: str, presented_sha256: str) -> GrantRefused | None:
    if not _token_is_grant(grant, token):
        return GrantRefused(
            f"the token presented is not grant {grant.pk} as Arbiter signed it (altered, truncated or another "
            "grant's): verify it before redeeming it",
            code="grant_signature_invalid",
        )
    if tool != grant.tool:
        return GrantRefused(
            f"grant {grant.pk} approves a call of {grant.tool!r}, not {tool[:80]!r}", code="grant_tool_mismatch"
        )
    if presented_sha256 != grant.arguments_sha256:
        return GrantRefused(
            f"these arguments are not the ones approved (their canonical SHA-256 is {presented_sha256}, the grant's "
            f"{grant.arguments_sha256}): a changed call needs a new approval",
            code="grant_arguments_mismatch",
        )
    return None


def _token_is_grant(grant: ApprovalGrant, token: str) -> bool:
    try:
        message_part, signature_part = token.split(".")
        message = _unb64url(message_part).decode("utf-8")
        signature = base64.b64encode(_unb64url(signature_part)).decode("ascii")
    except (ValueError, binascii.Error):
        return False
    return (
        message == grant.message
        and grant.public_key in checkpoints.trusted_public_keys()
        and checkpoints.signature_valid(message, signature, grant.public_key)
    )


def _claim(grant: ApprovalGrant, key_prefix: str) -> GrantRefused | None:
    """Mark the grant redeemed, unless it already is or has expired (then why)."""
    now = timezone.now()
    claimed = ApprovalGrant.objects.filter(pk=grant.pk, redeemed_at__isnull=True, expires_at__gt=now).update(
        redeemed_at=now, redeemed_by_key=key_prefix
    )
    grant.refresh_from_db(fields=["redeemed_at", "redeemed_by_key"])
    if claimed:
        return None
    if grant.redeemed_at is not None:
        return GrantRefused(
            f"grant {grant.pk} was redeemed at {grant.redeemed_at.isoformat()}: a grant is good for one execution",
            code="grant_already_redeemed",
        )
    return GrantRefused(
        f"grant {grant.pk} expired at {grant.expires_at.isoformat()}: the approval must be sought again",
        code="grant_expired",
    )
