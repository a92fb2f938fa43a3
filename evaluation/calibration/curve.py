"""The cost/quality curve a reviewer reads before choosing thresholds: accuracy against relative cost as the
escalation threshold(s) of the governing cascade sweep a grid.

Offline (`offline_curve`), every tier's answer to every item is already observed (the calibration cases:
each plan step answered, plus the reference tier), so any threshold setting is evaluated exactly without
another call, through `PlanStep.accepts` as in a worker. One tier that escalates is swept from 0 to 1 in
steps of 0.05; two (nano and mini) over the 21 x 21 grid of pairs. A tier's threshold is shared by every
rule whose cascade has it, as in calibration. `relative_cost` is the cascade's cost over the reference
tier's (the flagship alone) on the same items; `accuracy` the share of right answers. Every point says
whether it is on the frontier: no other point is at most as costly and strictly more accurate.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from evaluation.calibration.cases import CascadeCase, calibrated_tiers, evaluate_thresholds

GRID_STEP = 0.05
Thresholds = dict[str, float]


def threshold_settings(tiers: Sequence[str], step: float = GRID_STEP) -> list[Thresholds]:
    values = [round(index * step, 6) for index in range(round(1 / step) + 1)]
    return [dict(zip(tiers, combination, strict=True)) for combination in itertools.product(values, repeat=len(tiers))]


def mark_frontier(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sorted by relative cost (then accuracy, best first); `frontier` on the points nothing dominates."""
    points.sort(key=lambda point: (point["relative_cost"], -point["accuracy"]))
    best = -1.0
    for point in points:
        point["frontier"] = point["accuracy"] > best
        best = max(best, point["accuracy"])
    return points


def sweep(
    tiers: Sequence[str], evaluate: Callable[[Thresholds], dict[str, Any] | None], step: float = GRID_STEP
) -> list[dict[str, Any]]:
    """One point per grid setting that `evaluate` can say something about (it returns None otherwise)."""
    points = []
    for thresholds in threshold_settings(tiers, step):
        figures = evaluate(thresholds)
        if figures is not None:
            points.append({"thresholds": thresholds, **figures})
    return mark_frontier(points)


def offline_curve(cases: Iterable[CascadeCase]) -> list[dict[str, Any]]:
    cases = list(cases)
    tiers = calibrated_tiers(cases)
    if not tiers:
        return []

    def evaluate(thresholds: Thresholds) -> dict[str, Any] | None:
        stats = evaluate_thresholds(cases, thresholds)
        if stats.relative_cost is None or stats.accuracy is None:
            return None
        return {"relative_cost": round(stats.relative_cost, 6), "accuracy": round(stats.accuracy, 6)}

    return sweep(tiers, evaluate)
