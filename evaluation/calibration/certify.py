"""Learn then Test over an outcome table: which threshold settings are certified to meet an accuracy target
relative to the reference tier, and the cheapest of them.

The hypothesis of a setting lambda is H(lambda): E[L(lambda)] > 0 with the per-item loss on the target
itself, L = r x [reference right] - [cascade right] (r the target, e.g. 0.95; see OutcomeTable.losses).
It is rejected with a betting p-value (evaluation.calibration.betting) on the testing items, and the
settings are tested in a fixed sequence, stopping at the first that is not rejected (Angelopoulos, Bates,
Candès, Jordan, Lei 2021, "Learn then Test", arXiv:2110.01052). The sequence is fixed before the testing
items are looked at, so the family-wise error rate is at most delta with no correction: with probability
at least 1 - delta, every certified setting meets the target on the distribution the items came from.

The sequence:
- one escalating tier: the grid from 1.00 down (escalate almost everything first), fixed without data,
  so every calibration item tests;
- several: Pareto Testing (Laufer-Goldshtein, Fisch, Barzilay, Jaakkola 2023, ICLR): a share of the items
  (`ordering_share`) estimates each setting's mean loss, variance and cost; the settings on the front of
  predicted bound (mean + the margin a betting test on the testing items needs at that variance) and
  cost, from lowest bound to highest, each cheaper than all before it, are the sequence; the rest test.
  Ordering by the mean alone put high-variance settings first on small sets, and the sequence ended
  there: on the 369-item vote-share set (evaluation.recorded.vote_share) 35 of 200 splits certified
  nothing at target 0.95, 12 with the bound. Only the ordering items choose the path, so the guarantee
  is unchanged. A data-free path (every tier's threshold lowered together, all items testing) was
  measured and certified costlier on every set: the cheap settings lie off that diagonal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evaluation.calibration import betting
from evaluation.calibration.table import OutcomeTable


@dataclass(frozen=True)
class Certificate:
    path: tuple[int, ...]  # setting indices in the order tested
    p_values: tuple[float, ...]  # of the settings tested, in that order
    certified: tuple[int, ...]  # the rejected prefix of the path
    chosen: int | None  # the cheapest certified setting (cost on all calibration items)
    ordering_items: int
    testing_items: int
    testing: np.ndarray  # the columns tested on, in the order bet on

    @property
    def tested(self) -> int:
        return len(self.p_values)


def loss_range(target: float) -> tuple[float, float]:
    return -1.0, target


def ordered_path(
    table: OutcomeTable, columns: np.ndarray, target: float, *, testing_items: int = 0, delta: float = 0.05
) -> list[int]:
    """From lowest predicted bound to highest (costlier first within a tie), each setting cheaper than every
    one before it. The predicted bound is the estimated mean loss plus the margin a betting test on
    `testing_items` items needs at that estimated variance, sqrt(2 var log(1/delta) / n): a setting with a
    slightly lower mean but a far larger variance would fail first and end the sequence."""
    loss = table.mean_losses(target, columns)
    if testing_items:
        losses = table.losses(target, columns)
        loss = loss + np.sqrt(2 * losses.var(axis=1) * math.log(1 / delta) / testing_items)
    cost = table.costs(columns)
    order = np.lexsort((-cost, loss))
    costs = cost[order]
    before = np.minimum.accumulate(np.concatenate([[np.inf], costs[:-1]]))
    return [int(index) for index in order[costs < before]]


def learn_then_test(
    table: OutcomeTable,
    columns: np.ndarray,
    *,
    target: float,
    delta: float,
    fixed_path: bool,
    ordering_share: float,
    seed: int,
) -> Certificate:
    """Certify on `columns` (calibration items, in a random order: the first `ordering_share` of them
    order the path unless `fixed_path`)."""
    columns = np.asarray(columns, dtype=np.int64)
    if fixed_path:
        path, testing, ordering = list(range(len(table.settings))), columns, 0
    else:
        ordering = round(len(columns) * ordering_share)
        testing = columns[ordering:]
        path = ordered_path(table, columns[:ordering], target, testing_items=len(testing), delta=delta)
    lower, upper = loss_range(target)
    bet_order = np.random.default_rng(seed).permutation(testing)
    rows = np.asarray(path, dtype=np.int64)
    p_values = betting.p_values(table.row_losses(target, rows, bet_order), lower=lower, upper=upper, delta=delta)
    failed = np.flatnonzero(p_values > delta)
    stop = int(failed[0]) if failed.size else len(path)
    certified = tuple(path[:stop])
    chosen = None
    if certified:
        cost = table.costs(columns)[np.array(certified)]
        chosen = certified[int(np.argmin(cost))]  # argmin keeps the first of equal costs: the earlier setting
    tested = min(len(path), stop + 1)
    return Certificate(
        tuple(path),
        tuple(float(p) for p in p_values[:tested]),
        certified,
        chosen,
        ordering,
        len(testing),
        bet_order,
    )


def margin(table: OutcomeTable, certificate: Certificate, setting: int, *, target: float, delta: float) -> float:
    """How far inside the target the test puts `setting`: -(the 1 - delta upper confidence bound on its
    mean loss), in accuracy points (share of items). Positive for a certified setting."""
    lower, upper = loss_range(target)
    losses = table.row_losses(target, np.array([setting]), certificate.testing)[0]
    return -betting.upper_bound(losses, lower=lower, upper=upper, delta=delta)


def items_needed(
    table: OutcomeTable, columns: np.ndarray, setting: int, *, target: float, delta: float, testing_share: float
) -> int | None:
    """Labelled items in all (testing items / the share that tests) with which the test would certify
    `setting` if further items came at the rates seen on `columns`; None when it misses the target on them."""
    lower, upper = loss_range(target)
    losses = table.row_losses(target, np.array([setting]), np.asarray(columns, dtype=np.int64))[0]
    testing = betting.items_to_reject(losses, lower=lower, upper=upper, delta=delta)
    return None if testing is None else math.ceil(testing / testing_share)
