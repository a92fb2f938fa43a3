"""What every API view shares: key authentication, scopes, the per-key rate limit, strict JSON."""

from __future__ import annotations

import uuid

from rest_framework.views import APIView

from routing.api.authentication import ApiClient, ApiKeyAuthentication
from routing.api.errors import Problem
from routing.api.parsers import StrictJSONParser
from routing.api.permissions import HasScope
from routing.api.ratelimit import ApiKeyRateThrottle
from routing.models import Application


class RateLimited(Problem):
    def __init__(self, wait: float | None) -> None:
        seconds = max(1, int((wait or 1) + 0.999))
        super().__init__(
            f"rate limit for this key reached; retry in {seconds} s",
            status_code=429,
            code="rate_limited",
            extra={"retry_after": seconds},
        )
        self.wait = seconds


class ApiView(APIView):
    """Subclasses set `required_scopes = {"GET": "jobs:read", ...}`: one scope per operation."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScope]
    throttle_classes = [ApiKeyRateThrottle]
    parser_classes = [StrictJSONParser]
    required_scopes: dict[str, str] = {}

    @property
    def client(self) -> ApiClient:
        return self.request.user

    @property
    def application(self) -> Application:
        return self.request.user.application

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        for value in kwargs.values():
            # Postgres cannot even compare a text containing NUL: such an id is simply not found.
            if isinstance(value, str) and ("\x00" in value or len(value) > 200):
                raise Problem("not found", status_code=404, code="not_found")

    def throttled(self, request, wait):
        raise RateLimited(wait)


def parse_uuid(value: str, what: str = "job") -> uuid.UUID:
    """A path id that is not a UUID is simply not found (never a 500, never a hint)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(f"no {what} {value[:80]!r}", status_code=404, code="not_found") from None
