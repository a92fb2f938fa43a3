"""Who may do what with a key.

Job views name the scope an operation needs (`required_scopes` by HTTP method: `HasScope`). Admin views
name a level per method (`levels`): `ApplicationAdmin` (scope `app:admin`: the key's own application
only) or `PlatformAdmin` (scope `platform:admin`: the whole installation). An admin key acts for the
person who minted it and is bounded by that person's current roles, checked at every request.

A key without an owner (minted before keys acted for a person) may only read: a job it submitted would
have no submitter, so nobody would be kept from approving it, the key's holder included."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.permissions import BasePermission

from routing.api.authentication import ApiClient
from routing.models.applications import APP_ADMIN, PLATFORM_ADMIN
from routing.services.keys import may_administer


def _scope_refused(client: ApiClient, scope: str) -> exceptions.PermissionDenied:
    return exceptions.PermissionDenied(
        f"this key lacks the `{scope}` scope; its scopes: {', '.join(client.key.scopes) or 'none'}",
        code="insufficient_scope",
    )


OWNER_REQUIRED_SCOPES = frozenset({"jobs:write"})


def _ownerless_refused(consequence: str) -> exceptions.PermissionDenied:
    return exceptions.PermissionDenied(
        f"this key has no owner: it was minted before keys acted for a person, so {consequence}. Mint a new "
        "key in the web UI (it acts for you) and revoke this one.",
        code="key_without_owner",
    )


class HasScope(BasePermission):
    def has_permission(self, request, view) -> bool:
        client = request.user
        if not isinstance(client, ApiClient):
            return False  # DRF answers 401: no key was presented
        scope = view.required_scopes.get(request.method)
        if scope is None:
            return True  # an unsupported method: let DRF answer 405
        if not client.has_scope(scope):
            raise _scope_refused(client, scope)
        if scope in OWNER_REQUIRED_SCOPES and client.owner is None:
            raise _ownerless_refused("it may read jobs but not submit or cancel them (nobody would be its submitter)")
        return True


class _AdminLevel(BasePermission):
    scope: str

    def has_permission(self, request, view) -> bool:
        client = request.user
        if not isinstance(client, ApiClient):
            return False
        if not (client.has_scope(self.scope) or client.has_scope(PLATFORM_ADMIN)):
            raise _scope_refused(client, self.scope)
        owner = client.owner
        if owner is None:
            raise _ownerless_refused("it may read jobs but not administer anything")
        if not may_administer(owner):
            raise exceptions.PermissionDenied(
                f"this key acts for {owner.get_username()}, who no longer holds the policy-admin role: the "
                "key's administrative powers went with the role",
                code="owner_lacks_role",
            )
        return True


class ApplicationAdmin(_AdminLevel):
    """The key's own application (the `slug` in the path), or any with `platform:admin`."""

    scope = APP_ADMIN

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        client: ApiClient = request.user
        target = view.kwargs.get("slug")
        if target is not None and target != client.application.slug and not client.has_scope(PLATFORM_ADMIN):
            raise exceptions.PermissionDenied(
                f"this key administers application {client.application.slug!r} only; {str(target)[:80]!r} is "
                "not its application (that needs a `platform:admin` key)",
                code="other_application",
            )
        return True


class PlatformAdmin(_AdminLevel):
    scope = PLATFORM_ADMIN
