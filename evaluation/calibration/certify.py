"""Learn then Test over an outcome table: which threshold settings are certified to meet an accuracy target
relative to the reference tier, and the cheapest of them.

The hypothesis of a setting lambda is H(lambda): E[L(lambda)] >= 0 with the per-item loss on the target
itself, L = r x [reference right] - [cascade right] (r the target, e.g. 0.95; see OutcomeTable.losses).
It is rejected by the exact test of evaluation.calibration.exact (level delta at the fixed number of
testing items, for every item distribution; the proof is there) on the testing items, and the
settings are tested in a fixed sequence, stopping at the first that is not rejected (Angelopoulos, Bates,
Candès, Jordan, Lei 2021, "Learn then Test", arXiv:2110.01052). The sequence is fixed before the testing
items are looked at, so the family-wise error rate is at most delta with no correction: with probability
at least 1 - delta, every certified setting meets the target on the distribution the items came from.

The sequence:
- one escalating tier: the grid from 1.00 down (escalate almost everything first), fixed without data,
  so every calibration item tests;
- several: Pareto Testing (Laufer-Goldshtein, Fisch, Barzilay, Jaakkola 2023, ICLR): a share of the items
  (`ordering_share`) estimates each setting's mean loss, variance and cost; the settings on the front of
  predicted bound (mean + the margin the test on the testing items needs at that variance) and
  cost, from lowest bound to highest, each cheaper than all before it, are the sequence; the rest test.
  Ordering by the mean alone put high-variance settings first on small sets, and the sequence ended
  there: on the 369-item vote-share set (evaluation.recorded.vote_share) 35 of 200 splits certified
  nothing at target 0.95, 12 with the bound. Only the ordering items choose the path, so the guarantee
  is unchanged. Alongside it, the staircase: a path fixed without data (every tier but the last
  escalating one at 1.00, the last one's threshold from 1.00 down) tested on every calibration item.
  The certified set is the union; the cheapest of it is chosen. On small sets the staircase wins (no
  items spent ordering, no noisy path); on synthetic-miscalibrated 0.95 tightness p90 went from 1.42 to
  1.28 when it came in; where nano's lower thresholds pay (synthetic-calibrated) Pareto's share still
  finds them.

How delta is shared between the two (Bonferroni: each sequence errs with at most its share, so the union
with at most delta): half each, and 0.8 to the staircase below `SMALL_SET` (512) calibration items
(`staircase_share`; the count is fixed before any label is read, so the split is a constant of the
design). On the vote-share stand-in for issue 17's real set (369 items, target 0.95) the share of fresh
369-item draws whose certified setting costs <= 35% of the flagship's at >= 97% of its accuracy went
from 0.62 to 0.685 (200 draws from 20,000 items; 0.71 with the staircase alone): at 369 items the cheap
settings on the staircase are certified with probability 0.53 at delta / 2 and 0.67 at delta, and
Pareto's 92 ordering items rarely find a setting the staircase misses (Pareto alone at the full delta:
0.33, and 12% of draws certify nothing). Not everywhere: at 0.8 the per-rule study (its two-tier rule has 682
calibration items) went from 1.28 / 1.41 to 1.31 / 1.44 (tightness median / p90, 100 splits) and
synthetic-calibrated at 1,200 items from about 1.24 to 1.26 — with more items Pareto's path earns its
half. The cut at 512 lies between the sizes measured (369; 682 and more), not at a measured optimum.
Judged and not taken:
- recycling delta between the sequences (a graphical or fallback procedure, Bretz et al. 2009, Wiens
  2003): within a fixed sequence every rejection already passes its whole level on, so a graph can
  only recycle a chain's level once all its hypotheses are rejected. Pareto's path ends at the cheapest
  settings, which miss any target worth asking, so it never passes its level on; the staircase passes
  its own only when it certified its last setting, where it already certified its cheapest. Passing
  Pareto's level to the staircase would not even be valid as built: the staircase is tested on the
  ordering items too, so its p-values depend on the data that decides whether the level moves.
- ordering the path by cost from every item's confidences, labels unseen: the path would depend on the
  testing items' confidences, which go with their correctness (the argument against a data-cut grid in
  evaluation.calibration.calibrate.threshold_grid), so the tested hypotheses would no longer be fixed
  given the data Learn then Test needs them fixed against; and cost alone orders no useful path (at
  equal cost, accuracy differs by several points, and a fixed sequence stops at the first failure).
- cross-fitting the ordering (each half orders the other's path): two tests on half the items at half
  of delta each, on 369 items a loss against one test on all of them.
(Figures from before the exact test, e.g. the 35-of-200, were measured with the betting test this
module used earlier; see the issue's note for those with the exact one.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from evaluation.calibration import exact
from evaluation.calibration.table import OutcomeTable

# The staircase's share of delta, Pareto Testing having the rest: half, and more on a small set, where
# Pareto's ordering items are too few to find what the staircase misses (the module docstring).
STAIRCASE_SHARE, STAIRCASE_SHARE_SMALL, SMALL_SET = 0.5, 0.8, 512


def staircase_share(calibration_items: int) -> float:
    """Fixed by the number of calibration items alone (known before any label is read), so each sequence's
    level is a constant of the design and Bonferroni holds as for any fixed split of delta."""
    return STAIRCASE_SHARE_SMALL if calibration_items < SMALL_SET else STAIRCASE_SHARE


@dataclass(frozen=True)
class Certificate:
    path: tuple[int, ...]  # setting indices in the order tested
    statistics: tuple[float, ...]  # the exact test's Z of the settings tested, in that order
    certified: tuple[int, ...]  # the rejected prefix of the path
    chosen: int | None  # the cheapest certified setting (cost on all calibration items)
    ordering_items: int
    testing_items: int
    testing: np.ndarray  # the columns the chosen setting was tested on, in the order bet on
    delta_each: float = 0.0  # the level the chosen setting's sequence was tested at (its share of delta)

    @property
    def tested(self) -> int:
        return len(self.statistics)


def ordered_path(
    table: OutcomeTable, columns: np.ndarray, target: float, *, testing_items: int = 0, delta: float = 0.05
) -> list[int]:
    """From lowest predicted bound to highest (costlier first within a tie), each setting cheaper than every
    one before it. The predicted bound is the estimated mean loss plus the margin the exact test on
    `testing_items` items needs at that estimated variance, about z_delta sqrt(var / n): a setting with a
    slightly lower mean but a far larger variance would fail first and end the sequence."""
    loss = table.mean_losses(target, columns)
    if testing_items:
        losses = table.losses(target, columns)
        loss = loss - NormalDist().inv_cdf(delta) * np.sqrt(losses.var(axis=1) / testing_items)
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
    """The exact test's Z along `path` on `testing` (counted in a seeded order, evaluation.calibration.exact),
    the order, and how many lead the path rejected."""
    order = np.random.default_rng(seed).permutation(testing)
    if not path:
        return np.zeros(0), order, 0
    a, b, c = _counts(table, np.asarray(path, dtype=np.int64), order)
    statistics = exact.statistic(a, b, c, target)
    for index in range(len(path)):  # in order: no critical value is computed past the first failure
        if not exact.rejects(a[index], b[index], c[index], target, delta)[0]:
            return statistics, order, index
    return statistics, order, len(path)


def _counts(table: OutcomeTable, rows: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    codes = exact.cell_codes(~table.reference_wrong[order][None, :], table.right[np.ix_(rows, order)])
    return exact.cell_counts(codes)


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
        statistics, order, stop = _fixed_sequence(table, path, columns, target=target, delta=delta, seed=seed)
        certified = tuple(path[:stop])
        return _certificate(table, columns, path, statistics, certified, order, 0, delta)
    # Two sequences (Bonferroni: together they err with probability <= delta).
    stairs_level = delta * staircase_share(len(columns))
    pareto_level = delta - stairs_level
    ordering = round(len(columns) * ordering_share)
    testing = columns[ordering:]
    pareto = ordered_path(table, columns[:ordering], target, testing_items=len(testing), delta=pareto_level)
    stairs = staircase_path(table)
    z_pareto, order_pareto, stop_pareto = _fixed_sequence(
        table, pareto, testing, target=target, delta=pareto_level, seed=seed
    )
    z_stairs, order_stairs, stop_stairs = _fixed_sequence(
        table, stairs, columns, target=target, delta=stairs_level, seed=seed + 1
    )
    from_pareto, from_stairs = tuple(pareto[:stop_pareto]), tuple(stairs[:stop_stairs])
    certified = from_pareto + tuple(index for index in from_stairs if index not in from_pareto)
    statistics = np.concatenate(
        [z_pareto[: min(len(pareto), stop_pareto + 1)], z_stairs[: min(len(stairs), stop_stairs + 1)]]
    )
    chosen = _certificate(table, columns, [], statistics, certified, testing, ordering, pareto_level).chosen
    # The chosen setting's margin is reported on the items, and at the level, its own sequence tested it at.
    by_stairs = chosen in from_stairs and chosen not in from_pareto
    tested_on, level = (order_stairs, stairs_level) if by_stairs else (order_pareto, pareto_level)
    return Certificate(
        tuple(pareto + stairs), tuple(float(z) for z in statistics), certified, chosen, ordering,
        len(testing), tested_on, level,
    )  # fmt: skip


def _certificate(
    table: OutcomeTable,
    columns: np.ndarray,
    path: list[int],
    statistics: np.ndarray,
    certified: tuple[int, ...],
    testing: np.ndarray,
    ordering: int,
    delta_each: float,
) -> Certificate:
    chosen = None
    if certified:
        cost = table.costs(columns)[np.array(certified)]
        # The first of equal costs: the earlier setting. Equal to rounding only — a matrix-vector product
        # can sum identical rows in a different order (GSM8K without confidence: mini 1.00 and 0.02 escalate
        # the same items, and 0.02 came out a rounding error cheaper once the grid grew).
        lowest = float(cost.min())
        chosen = certified[int(np.flatnonzero(cost <= lowest + 1e-9 * abs(lowest))[0])]
    tested = min(len(path), len(certified) + 1)
    return Certificate(
        tuple(path),
        tuple(float(z) for z in statistics[:tested]),
        certified,
        chosen,
        ordering,
        len(testing),
        testing,
        delta_each,
    )


def margin(table: OutcomeTable, certificate: Certificate, setting: int, *, target: float, delta: float) -> float:
    """How far inside the target the test puts `setting`, in accuracy points (share of items): (r' - r) x
    the reference's accuracy on the items it was tested on, r' the highest target (to 0.0025, by bisection)
    at which the same test on the same items still certifies it. Positive for a certified setting."""
    level = certificate.delta_each or delta
    a, b, c = _counts(table, np.array([setting]), certificate.testing)

    def certifies(level_target: float) -> bool:
        return bool(exact.rejects(a, b, c, level_target, level)[0])

    if not certifies(target):
        return 0.0
    low, high = target, 1.0
    if certifies(high):
        low = high
    while high - low > 0.0025:
        middle = (low + high) / 2
        low, high = (middle, high) if certifies(middle) else (low, middle)
    reference = float((~table.reference_wrong[certificate.testing]).mean())
    return (low - target) * reference


def items_needed(
    table: OutcomeTable, columns: np.ndarray, setting: int, *, target: float, delta: float, testing_share: float
) -> int | None:
    """Labelled items in all (testing items / the share that tests) with which the test would certify
    `setting` if further items came at the rates seen on `columns`; None when it misses the target on them."""
    columns = np.asarray(columns, dtype=np.int64)
    codes = exact.cell_codes(~table.reference_wrong[columns][None, :], table.right[np.ix_([setting], columns)])[0]
    rates = tuple(float((codes == cell).mean()) for cell in (exact.A, exact.B, exact.C, exact.D))
    testing = exact.items_to_reject(rates, target, delta)  # type: ignore[arg-type]
    return None if testing is None else math.ceil(testing / testing_share)
