"""`Authorization: Bearer arb_<prefix>_<secret>`: the only way a key is accepted.

A key in the URL is refused outright (400), never used: URLs end up in access logs, proxies and
browser history, so a live key sent that way is leaked, and is revoked on the spot (ledger:
`api_key.revoked`, reason "exposed in a URL"); the answer says so. The access log never prints query
strings either (Procfile), but proxies in front of Arbiter may.
"""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from audit.ledger import Actor
from routing.api.errors import Problem
from routing.models import ApiKey, Application
from routing.services.keys import api_key_authenticate, api_key_revoke

QUERY_KEY_PARAMETERS = ("api_key", "apikey", "key", "token", "access_token")
MAX_TOKEN_LENGTH = 200


@dataclass(frozen=True)
class ApiClient:
    """The caller: an application, through one of its keys, acting for the person who minted the key
    (`owner`; None for a legacy key minted before keys had owners)."""

    key: ApiKey

    is_authenticated = True

    @property
    def application(self) -> Application:
        return self.key.application

    @property
    def owner(self):
        return self.key.created_by

    def has_scope(self, scope: str) -> bool:
        return scope in self.key.scopes


def key_in_url_refusal(request: Request, parameters: list[str]) -> Problem:
    """Revokes every live key found in the URL; the 400 to answer with."""
    revoked = []
    for name in parameters:
        for value in request.query_params.getlist(name):
            key = api_key_authenticate(value) if value.isprintable() and len(value) <= MAX_TOKEN_LENGTH else None
            if key is not None and api_key_revoke(
                key=key, actor=Actor.system("api-authentication"), reason="exposed in a URL"
            ):
                revoked.append(key.prefix)
    advice = "Send keys as `Authorization: Bearer <key>`."
    if revoked:
        message = (
            f"API keys are not accepted in the URL (found `{parameters[0]}`): URLs are logged, so the key "
            f"arb_{revoked[0]}_… sent there has been revoked. Mint a new key. {advice}"
        )
    else:
        message = f"API keys are not accepted in the URL (found `{parameters[0]}`): URLs are logged. {advice}"
    return Problem(
        message,
        status_code=400,
        code="key_in_url",
        errors=[{"field": f"query:{parameters[0]}", "message": "an API key may not be sent in the URL"}],
        extra={"revoked_keys": [f"arb_{prefix}_…" for prefix in revoked]},
    )


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey] | None:
        leaked = [name for name in QUERY_KEY_PARAMETERS if name in request.query_params]
        if leaked:
            raise key_in_url_refusal(request, leaked)
        header = get_authorization_header(request)
        if not header:
            return None
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token or b" " in token:
            raise exceptions.AuthenticationFailed(
                "malformed Authorization header; expected `Authorization: Bearer arb_<prefix>_<secret>`",
                code="malformed_authorization",
            )
        try:
            raw = token.decode("ascii")
        except UnicodeDecodeError:
            raw = ""
        key = api_key_authenticate(raw) if raw.isprintable() and len(raw) <= MAX_TOKEN_LENGTH else None
        if key is None:
            raise exceptions.AuthenticationFailed(
                "invalid API key: unknown, revoked or expired (or its application is disabled, or the person "
                "who minted it is deactivated)",
                code="invalid_api_key",
            )
        return ApiClient(key), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="arbiter"'
