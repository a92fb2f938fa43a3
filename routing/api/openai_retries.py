"""How the OpenAI-compatible endpoint makes an SDK's automatic retries safe: the implicit idempotency
window of a request sent without `Idempotency-Key` (routing.services.implicit_idempotency; the
`x-should-retry` header of the answers not worth retrying is set in routing.api.errors)."""

from __future__ import annotations

from django.conf import settings

from routing.services.implicit_idempotency import ImplicitWindow

MIN_WINDOW_S = 1.0


def implicit_window() -> ImplicitWindow | None:
    """None when `ARBITER_OPENAI_IMPLICIT_IDEMPOTENCY_S` is 0 (off). A retry may come after the endpoint
    waited its longest for the job (a 504) and then a window more."""
    window = settings.ARBITER_OPENAI_IMPLICIT_IDEMPOTENCY_S
    if window <= 0:
        return None
    window = max(window, MIN_WINDOW_S)
    return ImplicitWindow(window_s=window, horizon_s=settings.ARBITER_OPENAI_WAIT_S + window)
