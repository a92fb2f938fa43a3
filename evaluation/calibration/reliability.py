"""Reliability diagrams: does a tier's confidence mean what it says?

Per tier, the recorded answers' confidences are put in equal-width bins; each bin reports how many answers
fell in it, their mean confidence and the share that were right. The expected calibration error is the
count-weighted mean gap between the two (Guo et al. 2017, "On Calibration of Modern Neural Networks").
Answers without a recorded confidence, or whose correctness is unknown, are counted apart, not binned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from evaluation.recorded.outcomes import answer_correct
from modelserver.recorded import RecordedItem


def reliability(pairs: Sequence[tuple[float, bool]], *, bins: int = 10) -> dict[str, Any]:
    """`pairs` of (confidence, correct): the bins and the ECE; ECE is None when there is nothing to bin."""
    grouped: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for confidence, correct in pairs:
        grouped[min(int(confidence * bins), bins - 1)].append((confidence, correct))
    rows, gap = [], 0.0
    for index, members in enumerate(grouped):
        if not members:
            continue
        mean_confidence = math.fsum(c for c, _ in members) / len(members)
        accuracy = sum(1 for _, right in members if right) / len(members)
        gap += len(members) * abs(accuracy - mean_confidence)
        rows.append(
            {
                "lower": round(index / bins, 6),
                "upper": round((index + 1) / bins, 6),
                "count": len(members),
                "mean_confidence": round(mean_confidence, 6),
                "accuracy": round(accuracy, 6),
            }
        )
    return {"ece": round(gap / len(pairs), 6) if pairs else None, "answers": len(pairs), "bins": rows}


def tier_reliability(
    items: Sequence[RecordedItem], tiers: Mapping[str, str], *, bins: int = 10
) -> dict[str, dict[str, Any]]:
    """Per mapped tier, from the recorded confidences (which the logprob estimator reads back unchanged)."""
    report = {}
    for tier, model in tiers.items():
        pairs, without = [], 0
        for item in items:
            response = item.responses.get(model)
            if response is None:
                continue
            correct = answer_correct(response, response.content, item.reference)
            if response.confidence is None or correct is None:
                without += 1
                continue
            pairs.append((response.confidence, correct))
        entry = reliability(pairs, bins=bins)
        entry["unbinned"] = without
        if not pairs:
            entry["note"] = "no recorded confidence with a known verdict"
        report[tier] = entry
    return report
