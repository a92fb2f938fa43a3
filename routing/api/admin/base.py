"""What every admin view shares: a permission level per operation, the person the key acts for, the
path parameters and the 404 of an object that does not exist."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter

from audit.ledger import Actor
from routing import selectors
from routing.api.base import ApiView
from routing.api.errors import Problem
from routing.api.permissions import ApplicationAdmin, HasScope, PlatformAdmin
from routing.models import Application

APP = ApplicationAdmin
PLATFORM = PlatformAdmin
APP_DOC = "Scope `app:admin` (this key's own application only) or `platform:admin`. "
PLATFORM_DOC = "Scope `platform:admin`. "
SLUG_PATTERN = "^[-a-zA-Z0-9_]+$"
NAME = OpenApiParameter("name", str, OpenApiParameter.PATH, pattern=SLUG_PATTERN)
SLUG = OpenApiParameter("slug", str, OpenApiParameter.PATH, pattern=SLUG_PATTERN, description="The application.")
TAGS = ["admin"]


def not_found(what: str, name: object) -> Problem:
    return Problem(f"no {what} {str(name)[:80]!r}", status_code=404, code="not_found")


def application_or_404(slug: str) -> Application:
    application = selectors.application_get(slug=slug)
    if application is None:
        raise not_found("application", slug)
    return application


class AdminView(ApiView):
    """Subclasses set `levels = {"GET": APP, "PUT": PLATFORM, ...}`: one permission class per operation."""

    levels: dict[str, type[ApplicationAdmin | PlatformAdmin]] = {}

    def get_permissions(self):
        level = self.levels.get(self.request.method) if getattr(self, "request", None) else None
        return [level()] if level else [HasScope()]  # HasScope: 401 without a key, else 405

    @property
    def owner(self):
        """The person the key acts for (the permission classes guarantee there is one)."""
        return self.client.owner

    @property
    def via_key(self) -> str:
        return self.client.key.prefix

    @property
    def actor(self) -> Actor:
        return Actor.user(self.owner.pk)
