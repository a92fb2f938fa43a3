"""Option parsing shared by the ledger commands."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from django.core.management import CommandError


def window_point(text: str | None, *, allow_seq: bool = True) -> datetime | int | None:
    """A seq number ("1200") or an ISO date/time ("2025-06-01", "2025-06-01T12:00:00Z"; naive is UTC)."""
    if text is None:
        return None
    if allow_seq and text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        what = "a seq number or an ISO date/time" if allow_seq else "an ISO date/time"
        raise CommandError(f"{text!r} is not {what}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def show_progress(options: dict) -> bool:
    return bool(options.get("progress")) or sys.stderr.isatty()
