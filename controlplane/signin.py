"""Sign-in hygiene around Django's own auth: a log line per sign-in, and sessions that end.

Throttling is django-axes (settings: AXES_*): after ARBITER_SIGNIN_FAILURE_LIMIT wrong passwords for
one username from one address, that pair is locked out for ARBITER_SIGNIN_LOCKOUT_SECONDS and the
sign-in page says so (429). Axes keeps every attempt (AccessAttempt, AccessFailureLog, AccessLog).

A session ends after ARBITER_SESSION_IDLE_SECONDS unused (the cookie's age, renewed on every request
by SESSION_SAVE_EVERY_REQUEST) and, however busy, ARBITER_SESSION_SECONDS after sign-in (below).
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.contrib.auth.views import redirect_to_login
from django.dispatch import receiver
from django.shortcuts import render

logger = logging.getLogger("arbiter.signin")
SIGNED_IN_AT = "arbiter_signed_in_at"


def _client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "?") if request is not None else "?"


def lockout_response(request, original_response=None, credentials=None):
    """Axes' answer to a locked-out pair: the sign-in page saying so, 429 (never an error page)."""
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    logger.info("sign-in refused (locked out): user=%s address=%s", username, _client_address(request))
    minutes = max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    return render(request, "auth/locked.html", {"minutes": minutes}, status=429)


@receiver(user_logged_in, dispatch_uid="arbiter-signin-succeeded")
def _signed_in(sender, request, user, **kwargs) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[SIGNED_IN_AT] = int(time.time())
    logger.info("sign-in succeeded: user=%s address=%s", user.get_username(), _client_address(request))


@receiver(user_login_failed, dispatch_uid="arbiter-signin-failed")
def _sign_in_failed(sender, credentials, request=None, **kwargs) -> None:
    # Axes has already replaced the password in `credentials` by a mask; only the username is logged.
    logger.info("sign-in failed: user=%s address=%s", credentials.get("username", "?"), _client_address(request))


class SessionIdleMiddleware:
    """Ends a signed-in session past its absolute lifetime (the idle limit is the cookie's age)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            signed_in_at = request.session.get(SIGNED_IN_AT)
            if signed_in_at is None:
                request.session[SIGNED_IN_AT] = int(time.time())  # a session from before this rule
            elif time.time() - signed_in_at > settings.SESSION_ABSOLUTE_SECONDS:
                logger.info("session ended after %s s: user=%s", settings.SESSION_ABSOLUTE_SECONDS, user.get_username())
                logout(request)
                return redirect_to_login(request.get_full_path())
        return self.get_response(request)
