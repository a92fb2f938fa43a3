"""The Content Security Policy header (Django 5.2 has no built-in one; Django 6 does)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class ContentSecurityPolicyMiddleware:
    """Adds `settings.ARBITER_CSP` to HTML responses, except under ARBITER_CSP_EXEMPT_PREFIXES."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" in response or request.path.startswith(settings.ARBITER_CSP_EXEMPT_PREFIXES):
            return response
        response["Content-Security-Policy"] = settings.ARBITER_CSP
        return response
