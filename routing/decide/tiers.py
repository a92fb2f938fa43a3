"""Model tiers and task types: the two closed vocabularies every policy document speaks."""

from __future__ import annotations

from enum import StrEnum


class Tier(StrEnum):
    NANO = "nano"
    MINI = "mini"
    FLAGSHIP = "flagship"


# Cheapest first. A cascade must climb this order strictly, and min_tier/max_tier compare by it.
TIER_ORDER: tuple[Tier, ...] = (Tier.NANO, Tier.MINI, Tier.FLAGSHIP)
TIER_NAMES: tuple[str, ...] = tuple(tier.value for tier in TIER_ORDER)
_RANK: dict[str, int] = {tier.value: rank for rank, tier in enumerate(TIER_ORDER)}

TASK_TYPES: tuple[str, ...] = (
    "classification",
    "extraction",
    "ranking",
    "search",
    "code_review",
    "coding",
    "planning",
    "reasoning",
    "general",
)


def tier_rank(tier: object) -> int | None:
    """Position of `tier` in TIER_ORDER (0 = nano), or None for anything that is not a known tier."""
    if not isinstance(tier, str):
        return None
    return _RANK.get(str.__str__(tier))


def is_tier(value: object) -> bool:
    return tier_rank(value) is not None
