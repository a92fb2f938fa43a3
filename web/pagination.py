"""Keyset pagination: a page ends with a cursor naming its last row's (time, id); the next page is the
rows after it in the same order. Never OFFSET: page 20,000 costs what page 1 costs, through the index
on (time, id), and rows arriving meanwhile neither repeat nor vanish."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def encode(moment: datetime | int, pk: object) -> str:
    mark = moment.isoformat() if isinstance(moment, datetime) else str(moment)
    return base64.urlsafe_b64encode(f"{mark}|{pk}".encode()).decode().rstrip("=")


def decode(cursor: str | None, *, numeric: bool = False) -> tuple[datetime | int, str] | None:
    """(time or number, id) from a cursor, or None for a missing or malformed one."""
    if not cursor or len(cursor) > 200:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        mark, pk = text.split("|", 1)
        return (int(mark) if numeric else datetime.fromisoformat(mark)), pk
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def after(queryset: QuerySet, key: tuple[object, object] | None, *, fields: tuple[str, str],
          descending: bool = False) -> QuerySet:
    """Rows strictly after `key` in (fields) order. The first conjunct bounds an index range scan; the
    second only breaks ties on the first field."""
    if key is None:
        return queryset
    first, second = fields
    mark, pk = key
    op = "lt" if descending else "gt"
    bound = "lte" if descending else "gte"
    return queryset.filter(
        Q(**{f"{first}__{bound}": mark}) & (Q(**{f"{first}__{op}": mark}) | Q(**{f"{second}__{op}": pk}))
    )


def page(queryset: QuerySet, size: int, *, key: tuple[str, str]) -> Page:
    """The first `size` rows, and the cursor of the next page when there is one (one row read ahead)."""
    rows = list(queryset[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    cursor = None
    if more and rows:
        last = rows[-1]
        cursor = encode(_attr(last, key[0]), _attr(last, key[1]))
    return Page(rows, cursor)


def _attr(row: object, path: str) -> Any:
    for part in path.split("__"):
        row = getattr(row, part)
    return row
