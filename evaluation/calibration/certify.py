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
  is unchanged. Alongside it, at the other delta / 2 (Bonferroni), the staircase: a path fixed without
  data (every tier but the last escalating one at 1.00, the last one's threshold from 1.00 down) tested
  on every calibration item. The certified set is the union; the cheapest of it is chosen. On small sets
  the staircase wins (no items spent ordering, no noisy path; on the 369-item vote-share set at 0.95 the
  share of splits certifying <= 35% cost at >= 97% of the flagship's accuracy went from 27% to 39%); on
  synthetic-miscalibrated 0.95 tightness p90 went from 1.42 to 1.28; where nano's lower thresholds pay
  (synthetic-calibrated) Pareto's half still finds them (tightness 1.16 -> 1.17). Measured and dropped:
  every tier's threshold lowered together (the cheap settings lie off that diagonal), a smaller or
  larger ordering share (10-40%: no better), and other bets (a GRAPA bet mu/(sigma^2 + mu^2) and a
  mixture with it had less power than the plug-in on these losses).
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
    testing: np.ndarray  # the columns the chosen setting was tested on, in the order bet on
    delta_each: float = 0.0  # the level each sequence was tested at (delta, or delta / 2 for two)

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


def staircase_path(table: OutcomeTable) -> list[int]:
    """Every tier but the last escalating one at 1.00 (it keeps only its surest answers), the last one's
    threshold from 1.00 down: fixed before any item is seen. Lowering one threshold raises the cost of no
    item, and the last cheap tier's escalations are the ones that go to the reference, the dearest."""
    tiers = list(table.settings[0]) if table.settings else []
    if not tiers:
        return []
    *earlier, last = tiers
    on = [i for i, setting in enumerate(table.settings) if all(setting[tier] == 1.0 for tier in earlier)]
    return sorted(on, key=lambda index: -table.settings[index][last])


def _fixed_sequence(
    table: OutcomeTable, path: list[int], testing: np.ndarray, *, target: float, delta: float, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """P-values along `path` on `testing` (bet on in a seeded order), and how many lead the path rejected."""
    lower, upper = loss_range(target)
    bet_order = np.random.default_rng(seed).permutation(testing)
    p_values = betting.p_values(
        table.row_losses(target, np.asarray(path, dtype=np.int64), bet_order), lower=lower, upper=upper, delta=delta
    )
    failed = np.flatnonzero(p_values > delta)
    return p_values, bet_order, int(failed[0]) if failed.size else len(path)


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
        path = list(range(len(table.settings)))
        p_values, bet_order, stop = _fixed_sequence(table, path, columns, target=target, delta=delta, seed=seed)
        certified = tuple(path[:stop])
        return _certificate(table, columns, path, p_values, certified, bet_order, 0, delta)
    # Two sequences, each at delta / 2 (Bonferroni: together they err with probability <= delta).
    half = delta / 2
    ordering = round(len(columns) * ordering_share)
    testing = columns[ordering:]
    pareto = ordered_path(table, columns[:ordering], target, testing_items=len(testing), delta=half)
    stairs = staircase_path(table)
    p_pareto, order_pareto, stop_pareto = _fixed_sequence(table, pareto, testing, target=target, delta=half, seed=seed)
    p_stairs, order_stairs, stop_stairs = _fixed_sequence(
        table, stairs, columns, target=target, delta=half, seed=seed + 1
    )
    from_pareto, from_stairs = tuple(pareto[:stop_pareto]), tuple(stairs[:stop_stairs])
    certified = from_pareto + tuple(index for index in from_stairs if index not in from_pareto)
    p_values = np.concatenate(
        [p_pareto[: min(len(pareto), stop_pareto + 1)], p_stairs[: min(len(stairs), stop_stairs + 1)]]
    )
    chosen = _certificate(table, columns, [], p_values, certified, testing, ordering, half).chosen
    # The chosen setting's margin is reported on the items its own sequence tested it on.
    tested_on = order_stairs if chosen in from_stairs and chosen not in from_pareto else order_pareto
    return Certificate(
        tuple(pareto + stairs), tuple(float(p) for p in p_values), certified, chosen, ordering,
        len(testing), tested_on, half,
    )  # fmt: skip


def _certificate(
    table: OutcomeTable,
    columns: np.ndarray,
    path: list[int],
    p_values: np.ndarray,
    certified: tuple[int, ...],
    testing: np.ndarray,
    ordering: int,
    delta_each: float,
) -> Certificate:
    chosen = None
    if certified:
        cost = table.costs(columns)[np.array(certified)]
        chosen = certified[int(np.argmin(cost))]  # argmin keeps the first of equal costs: the earlier setting
    tested = min(len(path), len(certified) + 1)
    return Certificate(
        tuple(path),
        tuple(float(p) for p in p_values[:tested]),
        certified,
        chosen,
        ordering,
        len(testing),
        testing,
        delta_each,
    )


def margin(table: OutcomeTable, certificate: Certificate, setting: int, *, target: float, delta: float) -> float:
    """How far inside the target the test puts `setting`: -(the 1 - delta upper confidence bound on its
    mean loss), in accuracy points (share of items). Positive for a certified setting."""
    lower, upper = loss_range(target)
    losses = table.row_losses(target, np.array([setting]), certificate.testing)[0]
    return -betting.upper_bound(losses, lower=lower, upper=upper, delta=certificate.delta_each or delta)


def items_needed(
    table: OutcomeTable, columns: np.ndarray, setting: int, *, target: float, delta: float, testing_share: float
) -> int | None:
    """Labelled items in all (testing items / the share that tests) with which the test would certify
    `setting` if further items came at the rates seen on `columns`; None when it misses the target on them."""
    lower, upper = loss_range(target)
    losses = table.row_losses(target, np.array([setting]), np.asarray(columns, dtype=np.int64))[0]
    testing = betting.items_to_reject(losses, lower=lower, upper=upper, delta=delta)
    return None if testing is None else math.ceil(testing / testing_share)
