"""Sign-in hygiene around Django's own auth: a log line per sign-in, and sessions that end.

Throttling is django-axes (settings: AXES_*): after ARBITER_SIGNIN_FAILURE_LIMIT wrong passwords for
one username from one address, that pair is locked out for ARBITER_SIGNIN_LOCKOUT_SECONDS and the
sign-in page says so (429). Axes keeps every attempt (AccessAttempt, AccessFailureLog, AccessLog).

A session ends after ARBITER_SESSION_IDLE_SECONDS unused and, however busy, ARBITER_SESSION_SECONDS
after sign-in (SessionIdleMiddleware). A page's own polling (the review queue's count every 10 s) is not
use: those requests carry `X-Arbiter-Poll` (hx-headers) and leave the last activity alone, or a queue
left open in a tab would keep its session alive for ever.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver
from django.shortcuts import render

logger = logging.getLogger("arbiter.signin")
SIGNED_IN_AT = "arbiter_signed_in_at"
LAST_ACTIVE_AT = "arbiter_last_active_at"
POLL_HEADER = "HTTP_X_ARBITER_POLL"
# Activity is written to the session at most this often: not one session write per request.
ACTIVITY_RESOLUTION_S = 60


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
        request.session[SIGNED_IN_AT] = request.session[LAST_ACTIVE_AT] = int(time.time())
    logger.info("sign-in succeeded: user=%s address=%s", user.get_username(), _client_address(request))


@receiver(user_login_failed, dispatch_uid="arbiter-signin-failed")
def _sign_in_failed(sender, credentials, request=None, **kwargs) -> None:
    # Axes has already replaced the password in `credentials` by a mask; only the username is logged.
    logger.info("sign-in failed: user=%s address=%s", credentials.get("username", "?"), _client_address(request))


class SessionIdleMiddleware:
    """Signs out a session left unused too long, or past its absolute lifetime; the view then sends the
    visitor to the sign-in page as for anyone signed out (web.access, htmx-aware)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            self._check(request, user)
        return self.get_response(request)

    def _check(self, request, user) -> None:
        session, now = request.session, int(time.time())
        signed_in_at = session.setdefault(SIGNED_IN_AT, now)  # a session from before these rules starts now
        last_active_at = session.setdefault(LAST_ACTIVE_AT, now)
        if now - last_active_at > settings.SESSION_IDLE_SECONDS:
            reason = f"unused for {settings.SESSION_IDLE_SECONDS} s"
        elif now - signed_in_at > settings.SESSION_ABSOLUTE_SECONDS:
            reason = f"{settings.SESSION_ABSOLUTE_SECONDS} s after sign-in"
        else:
            if not request.META.get(POLL_HEADER) and now - last_active_at >= ACTIVITY_RESOLUTION_S:
                session[LAST_ACTIVE_AT] = now
            return
        logger.info("session ended (%s): user=%s", reason, user.get_username())
        logout(request)
