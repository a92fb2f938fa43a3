"""Template filters of the UI, loaded with `{% load ui %}` (registered in settings' UI block)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from controlplane.roles import Role, has_role
from web import charts

register = template.Library()

# A glyph and a word for every status, so that none is told by colour alone.
BADGES = {
    "queued": ("…", "queued"),
    "running": ("▶", "running"),
    "awaiting_approval": ("‖", "held for approval"),
    "completed": ("✓", "completed"),
    "done": ("✓", "done"),
    "failed": ("✕", "failed"),
    "blocked": ("⊘", "blocked"),
    "rejected": ("✕", "rejected"),
    "cancelled": ("–", "cancelled"),  # noqa: RUF001
    "expired": ("◷", "expired"),
    "pending": ("‖", "pending"),
    "approved": ("✓", "approved"),
    "overridden": ("✎", "overridden"),
    "escalated": ("↑", "escalated"),
    "accepted": ("✓", "accepted"),
    "draft": ("✎", "draft"),
    "active": ("●", "active"),
    "retired": ("○", "retired"),
    "closed": ("●", "closed"),
    "open": ("✕", "open"),
    "half_open": ("◐", "half-open"),
    "enabled": ("●", "enabled"),
    "disabled": ("○", "disabled"),
    "revoked": ("✕", "revoked"),
    "expired_key": ("◷", "expired"),
    "live": ("●", "live"),
    "intact": ("✓", "intact"),
    "broken": ("✕", "NOT intact"),
}


@register.filter
def badge(status: str, label: str = "") -> SafeString:
    glyph, word = BADGES.get(str(status), ("•", str(status)))
    if status == "pending" and label:
        word = label
    return format_html(
        '<span class="badge badge-{}"><span aria-hidden="true">{}</span> {}</span>', status, glyph, word
    )


@register.filter
def usd(value: Decimal | float | None, places: int = 4) -> str:
    if value is None:
        return "—"
    return f"${Decimal(value):,.{int(places)}f}"


@register.filter
def age(moment: datetime | timedelta | None) -> str:
    """"42 s", "7 min", "3 h 5 min", "4 d 2 h" since `moment` (or of a duration)."""
    if moment is None:
        return "—"
    span = moment if isinstance(moment, timedelta) else timezone.now() - moment
    seconds = max(int(span.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@register.filter
def pretty_json(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@register.filter
def hexdigest(value: bytes | memoryview | str | None, length: int = 0) -> str:
    if value is None:
        return "—"
    text = value if isinstance(value, str) else bytes(value).hex()
    return text[: int(length)] if length else text


@register.filter
def confidence(value: float | None, threshold: float | None = None) -> SafeString:
    return charts.confidence_meter(value, threshold)


@register.filter
def score(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


@register.filter
def has_any_role(user, roles: str) -> bool:
    """`user|has_any_role:"reviewer,auditor"`."""
    return has_role(user, *(Role(name.strip()) for name in roles.split(",")))


@register.filter
def role_names(user) -> str:
    if user.is_superuser:
        return "superuser"
    names = sorted(name.replace("_", " ") for name in user.groups.values_list("name", flat=True))
    return ", ".join(names) or "no role"


@register.filter
def thousands(value: int | None) -> str:
    number = _number(value)
    return "—" if number is None else f"{int(number):,}"


@register.filter
def join_sorted(values, separator: str = ", ") -> str:
    return separator.join(sorted(str(value).replace("_", " ") for value in values))


@register.filter
def lines_upto(count: int) -> range:
    return range(1, int(count) + 1)


@register.filter
def money(value: Decimal | float | None) -> str:
    """Dollars at the precision the amount needs: $1,234 · $12.34 · $0.012."""
    number = _number(value)
    return "—" if number is None else charts.usd(number)


@register.filter
def share(value: float | None, places: int = 1) -> str:
    """A fraction as a percentage: 0.8567 -> "85.7%"."""
    number = _number(value)
    return "—" if number is None else f"{number * 100:.{int(places)}f}%"


@register.filter
def times(value: float | None) -> str:
    """A ratio to a reference, 0.63 -> "0.63" and a times sign (cost relative to the flagship alone)."""
    number = _number(value)
    return "—" if number is None else f"{number:.2f}×"  # noqa: RUF001


def _number(value: object) -> float | None:
    """A figure read from a stored report; a key an older report lacks reaches a filter as "" (the
    template engine's stand-in for a missing variable) and reads as no figure, not as an error."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
