"""Roles are Django groups. Permissions are checked by role on the server, for every page and action."""

from __future__ import annotations

from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group


class Role(StrEnum):
    REVIEWER = "reviewer"
    POLICY_ADMIN = "policy_admin"
    AUDITOR = "auditor"


def ensure_role_groups() -> None:
    for role in Role:
        Group.objects.get_or_create(name=role.value)


def has_role(user: AbstractBaseUser | AnonymousUser, *roles: Role) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    names = getattr(user, "_arbiter_role_names", None)
    if names is None:
        names = set(user.groups.values_list("name", flat=True))
        user._arbiter_role_names = names  # cached per request: the user object lives one request
    return any(role.value in names for role in roles)
