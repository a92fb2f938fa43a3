"""Who may use which page. Roles are groups (controlplane.roles); a superuser passes every check.

Every UI view is wrapped in `role_required(...)` with one of the sets below, so the check happens on the
server before the view does anything. An anonymous visitor goes to the sign-in page (an htmx request is
told to redirect the whole page, not to swap the sign-in form into a fragment).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.utils.http import urlencode
from django_htmx.http import HttpResponseClientRedirect

from controlplane.roles import Role, has_role

EVERYONE = (Role.REVIEWER, Role.POLICY_ADMIN, Role.AUDITOR)
JOB_READERS = (Role.REVIEWER, Role.AUDITOR)
REVIEWERS = (Role.REVIEWER,)
# Who may reach a decision on a held job: an approval rule's group is one of these roles. The service
# (review._check_reviewer) then checks the person against the request's own requirements.
DECIDERS = (Role.REVIEWER, Role.POLICY_ADMIN)
POLICY_READERS = (Role.POLICY_ADMIN, Role.AUDITOR, Role.REVIEWER)
ADMIN_READERS = (Role.POLICY_ADMIN, Role.AUDITOR)
POLICY_ADMINS = (Role.POLICY_ADMIN,)
LEDGER_READERS = (Role.AUDITOR, Role.REVIEWER)
EXPORTERS = (Role.AUDITOR,)
# Erasure crosses applications: the people who answer for the record (auditors) and its rules (policy admins).
ERASERS = (Role.AUDITOR, Role.POLICY_ADMIN)

View = Callable[..., HttpResponse]


def role_required(*roles: Role) -> Callable[[View], View]:
    def decorator(view: View) -> View:
        @wraps(view)
        def checked(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                return _to_login(request)
            if not has_role(request.user, *roles):
                raise PermissionDenied(f"this needs the role {' or '.join(role.value for role in roles)}")
            return view(request, *args, **kwargs)

        return checked

    return decorator


def _to_login(request: HttpRequest) -> HttpResponse:
    if getattr(request, "htmx", False):
        current = urlsplit(request.htmx.current_url or "/")
        back = current.path + (f"?{current.query}" if current.query else "")
        return HttpResponseClientRedirect(f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': back})}")
    return redirect_to_login(request.get_full_path())


def can(user, *roles: Role) -> bool:
    return has_role(user, *roles)
