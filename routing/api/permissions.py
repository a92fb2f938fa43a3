"""Scopes: each view names the scope an operation needs (`required_scopes` by HTTP method)."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.permissions import BasePermission

from routing.api.authentication import ApiClient


class HasScope(BasePermission):
    def has_permission(self, request, view) -> bool:
        client = request.user
        if not isinstance(client, ApiClient):
            return False  # DRF answers 401: no key was presented
        scope = view.required_scopes.get(request.method)
        if scope is None:
            return True  # an unsupported method: let DRF answer 405
        if not client.has_scope(scope):
            raise exceptions.PermissionDenied(
                f"this key lacks the `{scope}` scope; its scopes: {', '.join(client.key.scopes) or 'none'}",
                code="insufficient_scope",
            )
        return True
