"""Option parsing the evaluation commands share."""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime


def moment(text: str) -> datetime:
    """An ISO date or date-time; naive ones are UTC."""
    parsed = parse_datetime(text)
    if parsed is None:
        day = parse_date(text)
        if day is not None:
            parsed = datetime(day.year, day.month, day.day)
    if parsed is None:
        raise CommandError(f"{text!r} is not an ISO date or date-time (e.g. 2026-01-31 or 2026-01-31T12:00Z)")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)
