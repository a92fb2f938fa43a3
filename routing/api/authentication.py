"""`Authorization: Bearer arb_<prefix>_<secret>`: the only way a key is accepted.

A key in the URL is refused outright (401), never tried: URLs end up in access logs, proxies and
browser history, so a key sent that way must be treated as leaked and rotated.
"""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from routing.models import ApiKey, Application
from routing.services.keys import api_key_authenticate

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


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey] | None:
        leaked = [name for name in QUERY_KEY_PARAMETERS if name in request.query_params]
        if leaked:
            raise exceptions.AuthenticationFailed(
                f"API keys are not accepted in the URL (found `{leaked[0]}`): URLs are logged. Send the key as "
                "`Authorization: Bearer <key>`, and rotate a key that has been sent in a URL.",
                code="key_in_url",
            )
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
