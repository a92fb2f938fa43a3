"""Every item's outcome under every threshold setting, as arrays: what Learn then Test, the hindsight
frontier and the validity study read, so that trying a setting on a subset of items is an index, not
another walk.

Each cell comes from `CascadeCase.final_index` — the rule of the one cascade walk a worker uses
(routing.decide.cascade.cascade_walk, checked against it by tests/evaluation/
test_calibration_agrees_with_walk.py). The walk runs once per item per distinct setting of the tiers that
item's plan gates: a two-tier plan under a grid over nano and mini is walked 21 times, not 441.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from evaluation.calibration.cases import CascadeCase, Thresholds, gates

__all__ = ["OutcomeTable", "outcome_table"]


@dataclass(frozen=True, eq=False)
class OutcomeTable:
    settings: tuple[Thresholds, ...]
    right: np.ndarray  # [settings, items] bool: the answer the cascade keeps is known to be right
    cost: np.ndarray  # [settings, items] what the cascade pays
    reference_right: np.ndarray  # [items] bool: the reference tier's answer is known right
    reference_wrong: np.ndarray  # [items] bool: known wrong (neither: unknown)
    reference_cost: np.ndarray  # [items]

    @property
    def items(self) -> int:
        return int(self.reference_cost.shape[0])

    def _weights(self, columns: np.ndarray) -> np.ndarray:
        # Sums over a subset of items as one matrix-vector product: far cheaper than indexing columns.
        weights = np.zeros(self.items)
        np.add.at(weights, columns, 1.0)
        return weights

    def mean_losses(self, target: float, columns: np.ndarray) -> np.ndarray:
        """Each setting's mean of `losses` over `columns`."""
        weights = self._weights(columns)
        reference = float((~self.reference_wrong) @ weights)
        # float32 on both sides: a float64 vector would make numpy copy the whole matrix to float64.
        return (target * reference - self._right @ weights.astype(np.float32)) / len(columns)

    def costs(self, columns: np.ndarray) -> np.ndarray:
        """Each setting's total cost over `columns`."""
        return self.cost @ self._weights(columns)

    def row_losses(self, target: float, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """`losses` of some settings only, over `columns` in their order: [rows, columns]."""
        reference = ~self.reference_wrong[columns]
        return target * reference[None, :].astype(float) - self.right[np.ix_(rows, columns)].astype(float)

    def losses(self, target: float, columns: np.ndarray | None = None) -> np.ndarray:
        """L = target x [reference right] - [cascade right], per setting and item, in [-1, target].

        Its mean is <= 0 exactly when accuracy(cascade) >= target x accuracy(reference). Unknown verdicts
        count against the cascade both ways: its own as wrong, the reference's as right."""
        reference = ~self.reference_wrong if columns is None else ~self.reference_wrong[columns]
        right = self.right if columns is None else self.right[:, columns]
        return target * reference[None, :].astype(float) - right.astype(float)

    def accuracy(self, columns: np.ndarray) -> np.ndarray:
        return self._right @ self._weights(columns).astype(np.float32) / len(columns)

    def relative_cost(self, columns: np.ndarray) -> np.ndarray:
        return self.costs(columns) / self.reference_cost[columns].sum()

    @property
    def _right(self) -> np.ndarray:
        cached = self.__dict__.get("_right_float")
        if cached is None:
            cached = self.right.astype(np.float32)
            object.__setattr__(self, "_right_float", cached)
        return cached


def _final_indices(cases: Sequence[CascadeCase], settings: Sequence[Mapping[str, float]]) -> np.ndarray:
    """[settings, items]: the step whose answer each item's cascade keeps under each setting."""
    out = np.zeros((len(settings), len(cases)), dtype=np.int64)
    by_shape: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for index, case in enumerate(cases):
        by_shape[tuple(step.tier for step in case.steps[:-1])].append(index)
    for shape, members in by_shape.items():
        keys = [tuple(setting.get(tier) for tier in shape) for setting in settings]
        walked: dict[tuple[float | None, ...], list[int]] = {}
        for key in dict.fromkeys(keys):
            thresholds = {tier: value for tier, value in zip(shape, key, strict=True) if value is not None}
            probe = gates(thresholds)
            walked[key] = [cases[member].final_index(probe) for member in members]
        out[:, members] = np.array([walked[key] for key in keys], dtype=np.int64).reshape(len(settings), len(members))
    return out


def outcome_table(cases: Sequence[CascadeCase], settings: Sequence[Thresholds]) -> OutcomeTable:
    width = max((len(case.steps) for case in cases), default=1)
    right = np.zeros((len(cases), width), dtype=bool)
    paid = np.zeros((len(cases), width))
    for row, case in enumerate(cases):
        for step, answer in enumerate(case.answers):
            right[row, step] = answer.correct is True
        paid[row, : len(case.cumulative_cost)] = case.cumulative_cost
    finals = _final_indices(cases, settings)
    items = np.arange(len(cases))[None, :]
    return OutcomeTable(
        settings=tuple(dict(setting) for setting in settings),
        right=right[items, finals],
        cost=paid[items, finals],
        reference_right=np.array([case.reference.correct is True for case in cases], dtype=bool),
        reference_wrong=np.array([case.reference.correct is False for case in cases], dtype=bool),
        reference_cost=np.array([case.reference.cost_usd for case in cases], dtype=float),
    )
