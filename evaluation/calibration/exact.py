"""An exact fixed-n test for the mean of the target's loss, which takes only four values.

Per item the reference tier's answer is right or not and the cascade's is right or not, so the loss
L = t x [reference right] - [cascade right] (t the target, evaluation.calibration.table) is one of

    A: both right                      L = t - 1   (mildly below 0: the item the claim lives on)
    B: reference right, cascade wrong  L = t
    C: reference wrong, cascade right  L = -1
    D: both wrong                      L = 0

Whatever the items' distribution (the questions, the confidence scores, how the tiers' errors go
together), a setting's items are i.i.d. draws of one of four cells with probabilities (a, b, c, d): the
multinomial over the cells IS the whole model, and a test valid for every (a, b, c, d) is distribution
free. The null of a setting is H0: E[L] = (t - 1) a + t b - c >= 0 (the target is missed, or just met).

Why not betting any more. The Waudby-Smith-Ramdas betting p-value this replaces is valid at every sample
size at once (Ville's inequality), and pays for it: rejecting needs a log-capital of log(1/delta), about
3.0 at delta = 0.05, where a test at one fixed n needs z^2 / 2, about 1.35 — roughly twice the items for
the same margin. Calibration looks at its items once, at a fixed n, so that anytime validity is waste.
Hoeffding-Bentkus is fixed-n but pays for the loss's widest variance (t on [-1, t]) where the real one is
a tenth of it. The loss's four values make an exact test possible instead: Barnard's unconditional test
(the p-value is the largest probability, over the nuisance parameters on the null, of a statistic at least
as extreme as the one observed), with the nuisance reduced to one dimension and the supremum bounded
rigorously on a grid, so no normal approximation enters anywhere.

The test, and why it is valid (each step holds for every (a, b, c, d)):

1. Condition on the D items. Given how many items are D, the others are i.i.d. over {A, B, C} with
   probabilities (a, b, c) / (1 - d), and E[L] >= 0 exactly when their mean loss is >= 0 (E[L] is
   (1 - d) times it). A test of level delta given every count of D items has level delta. To keep the
   number of cached critical values small, only the first N of the non-D items in a seeded order are
   counted, N the count rounded down to 7 significant bits (at most 1/64 of them dropped): a uniformly
   random subset of i.i.d. items is i.i.d. with the same law, so the argument is unchanged.
2. The statistic, on the N items with counts (A, B, C): the signed root of the multinomial likelihood
   ratio of "mean loss 0" (`statistic`; an empirical likelihood on three points), negative when the
   observed mean loss is. It is then made monotone by construction: Z(B, C) is the largest raw value over
   the tables reached from (B, C) by lowering losses (B -> A, A -> C, B -> C: fewer B, more C), so Z never
   increases when a loss is lowered, and the rejection region R_z = {Z <= z} is closed under lowering
   losses — what steps 3 and 4 need. (On every table computed the raw statistic was monotone already.)
   Why the likelihood ratio: the loss is skewed (mostly t - 1, rarely t), and a studentized mean
   S / sqrt(sum L^2) over-rejects in its lower tail there, so its exact critical value fell to about
   -2.16 at N = 2,000 and delta = 0.025 where the likelihood ratio's is -2.02 (the normal one -1.96);
   in a scratch comparison at N = 1,024 the likelihood ratio certified 43% of samples of a
   just-certifiable setting where the studentized mean certified 38%.
3. The supremum over the null lies on its boundary. From any (a, b, c) with mean > 0, moving mass from B
   to C reaches mean 0 before b runs out; coupling (each B item turned C with the same probability)
   lowers losses only, so the probability of R_z does not drop. The boundary is the segment
   gamma in [0, t / (1 + t)]: c = gamma, b = 1 - t + t gamma, a = t - (1 + t) gamma.
4. The supremum over the segment is bounded, not guessed. Along it b and c both grow with gamma; on
   [gamma_j, gamma_j+1], coupling the items through one uniform each (B below b, C above 1 - c) gives
   P_gamma(R_z) <= P(R_z) at b = b(gamma_j), c = c(gamma_j+1), a point off the segment that is computed
   exactly (its trinomial probabilities on a window of +-7 standard deviations, everything outside the
   window added whole). U(z) = the largest of these bounds >= the supremum of P(R_z) over the null.
   (The region is computed for B and C up to what a window reaches; beyond, it takes every C and no B,
   which keeps it closed.)
5. The critical value z*(N, t, delta) is the largest z on a 0.01 grid with U(z) <= delta (none when even
   the most extreme table is too likely: the all-A sample needs t^N <= delta, N >= 59 at 0.95 / 0.05); a
   setting is rejected (certified) when (B, C) is in R_z*. P(reject | H0) <= U(z*) <= delta for every
   (a, b, c, d). Equivalently the p-value p = U(Z observed) is super-uniform under H0 (P(p <= u) <= u),
   and the test rejects when it is <= delta, to the grid.

The grid over gamma is fine enough that the bound costs about 0.04 standard deviations of the mean
(its step is 0.04 x the boundary's standard deviation / sqrt(N) / t). The region depends on (N, t,
delta) only, so it is computed once per process (about 0.1 s at N = 400, 2 s at N = 2,000) and reused
over settings, splits and tables; the 7-bit rounding of N keeps the distinct N few. Computed exactly at
60 points of the boundary, the rejection probability was at most 0.036 (N = 360, delta 0.05), 0.023
(N = 1,024, delta 0.025) and 0.0091 (N = 200, delta 0.0125): never above delta.

Not chosen: conditioning on the discordant items (B + C) as McNemar does — the null here involves A too,
so it does not drop out; a lower confidence bound on the reference's accuracy at a share of delta with
an exact test of B - C beside it (Bonferroni: about 7% more margin); and the full four-cell test without
conditioning on D (a two-dimensional nuisance, too slow to bound rigorously).

Learn then Test (evaluation.calibration.certify) needs nothing more: each hypothesis' test has level
delta, so the fixed-sequence family-wise error rate is at most delta.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from statistics import NormalDist

import numpy as np

__all__ = ["cell_codes", "cell_counts", "critical_value", "items_to_reject", "rejects", "statistic", "test_size"]

STEP = 0.04  # the gamma grid's step, in standard deviations of the boundary's mean over N items
WINDOW = 7.0  # standard deviations of each count summed exactly; the mass outside is added whole
Z_GRID = 0.01
# Cell codes; D (both wrong) is the one the test conditions away.
A, B, C, D = 0, 1, 2, 3


def test_size(count: int) -> int:
    """How many of `count` non-D items the test counts: `count` rounded down to 7 significant bits."""
    if count < 128:
        return count
    shift = count.bit_length() - 7
    return (count >> shift) << shift


def cell_codes(reference_right: np.ndarray, cascade_right: np.ndarray) -> np.ndarray:
    """The cell (A, B, C, D) of each item: `reference_right` [items] or [rows, items], `cascade_right`
    [rows, items]."""
    return np.where(reference_right, np.where(cascade_right, A, B), np.where(cascade_right, C, D)).astype(np.int8)


def cell_counts(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts (A, B, C) of the first test_size(non-D count) non-D items of each row of `codes` [rows, items]
    (in the row's order, which must be fixed before the outcomes are looked at)."""
    codes = np.atleast_2d(codes)
    counted = codes != D
    kept = np.array([test_size(int(count)) for count in counted.sum(axis=1)])
    counted &= np.cumsum(counted, axis=1) <= kept[:, None]
    return tuple((counted & (codes == cell)).sum(axis=1) for cell in (A, B, C))  # type: ignore[return-value]


def statistic(a: np.ndarray, b: np.ndarray, c: np.ndarray, target: float) -> np.ndarray:
    """The signed root of the likelihood ratio of H0 (mean loss 0) for cell counts (a, b, c): negative when
    the mean loss observed is below 0, -inf when no loss was above 0 and some below.

    The counts are multinomial; the null's maximum-likelihood point moves each cell's share n_k / N to
    n_k / (N (1 + lam v_k)), lam the root of sum n_k v_k / (1 + lam v_k) = 0 in the range where every share
    stays positive — a quadratic in lam, for three values — and the statistic is
    sign(S) sqrt(2 sum n_k log(1 + lam v_k)) (Owen's empirical likelihood on a three-point support)."""
    counts = [np.asarray(x, dtype=float) for x in (a, b, c)]
    values = (target - 1.0, target, -1.0)
    total = counts[0] + counts[1] + counts[2]
    s = sum(n * v for n, v in zip(counts, values, strict=True))
    # sum_k n_k v_k prod_{j != k, n_j > 0} (1 + lam v_j) = s + c1 lam + c2 lam^2 (absent cells left out:
    # their factor would add a root that is no solution)
    present = [np.where(n > 0, v, 0.0) for n, v in zip(counts, values, strict=True)]
    c1 = sum(counts[k] * values[k] * sum(present[j] for j in range(3) if j != k) for k in range(3))
    c2 = sum(counts[k] * values[k] * np.prod([present[j] for j in range(3) if j != k], axis=0) for k in range(3))
    # The shares stay positive for lam in (-1 / t, upper), upper set by the negative values present.
    lower = np.full(total.shape, -1 / target)
    upper = np.where(counts[2] > 0, 1.0, np.where(counts[0] > 0, 1 / max(1 - target, 1e-12), np.inf))
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(np.maximum(c1**2 - 4 * c2 * s, 0.0))
        quadratic = c2 != 0
        candidates = [
            np.where(quadratic, (-c1 + root) / (2 * c2), -s / c1),
            np.where(quadratic, (-c1 - root) / (2 * c2), np.nan),
        ]
        lam = np.full(total.shape, np.nan)
        for candidate in candidates:
            inside = np.isfinite(candidate) & (candidate > lower) & (candidate < upper) & np.isnan(lam)
            lam = np.where(inside, candidate, lam)
        logs = sum(
            np.where(n > 0, n * np.log1p(np.clip(np.nan_to_num(lam) * v, -1 + 1e-15, None)), 0.0)
            for n, v in zip(counts, values, strict=True)
        )
        z = np.sign(s) * np.sqrt(np.maximum(2 * logs, 0.0))
    # No root: the values present cannot have mean 0 (all below it, or all above): infinitely far.
    z = np.where(np.isnan(lam), np.where(s < 0, -np.inf, np.inf), z)
    return np.where(s == 0, 0.0, z)


def rejects(a: np.ndarray, b: np.ndarray, c: np.ndarray, target: float, delta: float) -> np.ndarray:
    """Whether each setting's counts reject H0: E[L] >= 0 at level delta."""
    a, b, c = (np.atleast_1d(np.asarray(x, dtype=np.int64)) for x in (a, b, c))
    out = np.zeros(a.shape, dtype=bool)
    for index, (na, nb, nc) in enumerate(zip(a.tolist(), b.tolist(), c.tolist(), strict=True)):
        boundary = rejection_boundary(na + nb + nc, target, delta)
        out[index] = boundary.size > 0 and nc >= boundary[nb]
    return out


def _log_factorials(n: int) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=float)))])


def _xlogy(x: np.ndarray, y: float) -> np.ndarray:
    """x log y, with 0 log 0 = 0 (and x log 0 = -inf: a cell of probability 0 is never seen)."""
    if y > 0:
        return x * math.log(y)
    return np.where(x > 0, -np.inf, 0.0)


def _gamma_grid(n: int, target: float) -> np.ndarray:
    top = target / (1 + target)
    spread = 1 + target**3 - (1 - target) ** 2 * (1 + target)  # var(L) on the segment is t(1-t) + spread x gamma
    points, gamma = [0.0], 0.0
    while gamma < top:
        variance = max(target * (1 - target) + spread * gamma, 1 / n)
        gamma = min(top, gamma + STEP * math.sqrt(variance / n) / target)
        points.append(gamma)
    return np.array(points)


def _reach(n: int, share: float) -> int:
    """The largest count any window of step 4 reaches for a cell whose probability is at most `share`."""
    return min(n, math.ceil(n * share + WINDOW * math.sqrt(n / 4) + 2))


def _statistic_table(n: int, target: float) -> np.ndarray:
    """[B, C] the statistic for N = n items, made monotone: the largest value over the tables one reaches
    by lowering losses (B' <= B, C' >= C). Closed under lowering losses by construction (step 2); on the
    grids checked the likelihood ratio was monotone already and nothing changed. Only B and C up to what
    a window reaches (b <= 1 / (1 + t), c <= t / (1 + t) on the null): the region takes no B beyond, and
    every C beyond (see _first_rejected_c), which keeps it closed."""
    b, c = np.meshgrid(
        np.arange(_reach(n, 1 / (1 + target)) + 1), np.arange(_reach(n, target / (1 + target)) + 1), indexing="ij"
    )
    valid = b + c <= n
    table = np.where(valid, statistic(np.maximum(n - b - c, 0), b, c, target), -np.inf)
    table = np.maximum.accumulate(table, axis=0)
    table = np.maximum.accumulate(table[:, ::-1], axis=1)[:, ::-1]
    return np.where(valid, table, -np.inf)


def _first_rejected_c(n: int, table: np.ndarray, z: np.ndarray) -> np.ndarray:
    """[z, B]: the least C in the region {Z <= z} at each B (n - B + 1 when none); each row of `table`
    falls with C, every C past the table's last column is in the region, no B past its last row is."""
    rows, columns = table.shape
    out = np.empty((z.size, n + 1), dtype=np.int64)
    out[:, rows:] = n - np.arange(rows, n + 1) + 1
    for b in range(rows):
        row = -table[b, : min(columns, n - b + 1)]  # rises with C
        out[:, b] = np.searchsorted(row, -z, side="left")
    return out


def _size_bounds(n: int, target: float, first_c: np.ndarray) -> np.ndarray:
    """U(z) for each row of `first_c` ([z, B], the region {Z <= z} of N = n items): an upper bound on the
    supremum over the null of its probability (steps 3 and 4)."""
    log_fact = _log_factorials(n)
    gammas = _gamma_grid(n, target)
    bound = np.zeros(first_c.shape[0])
    for low, high in itertools.pairwise(gammas):
        pb, pc = 1 - target + target * low, high
        pa = max(0.0, 1 - pb - pc)
        sb, sc = math.sqrt(n * pb * (1 - pb)), math.sqrt(n * pc * (1 - pc))
        b0, b1 = max(0, math.floor(n * pb - WINDOW * sb - 1)), min(n, math.ceil(n * pb + WINDOW * sb + 1))
        c0, c1 = max(0, math.floor(n * pc - WINDOW * sc - 1)), min(n, math.ceil(n * pc + WINDOW * sc + 1))
        bs = np.arange(b0, b1 + 1)[:, None]
        cs = np.arange(c0, c1 + 1)[None, :]
        rest = n - bs - cs
        valid = rest >= 0
        rest = np.maximum(rest, 0)
        log_p = (
            log_fact[n] - log_fact[bs] - log_fact[cs] - log_fact[rest]
            + _xlogy(bs, pb) + _xlogy(cs, pc) + _xlogy(rest, pa)
        )  # fmt: skip
        p = np.where(valid, np.exp(np.where(valid, log_p, -np.inf)), 0.0)
        outside = max(0.0, 1.0 - float(p.sum()))
        # tails[i, k] = P(B = b0 + i, C >= c0 + k), k = 0 .. width (the last: none)
        tails = np.concatenate([np.cumsum(p[:, ::-1], axis=1)[:, ::-1], np.zeros((p.shape[0], 1))], axis=1)
        index = np.clip(first_c[:, b0 : b1 + 1] - c0, 0, tails.shape[1] - 1)  # [z, B in window]
        inside = np.take_along_axis(tails[None, :, :], index[:, :, None], axis=2)[:, :, 0].sum(axis=1)
        bound = np.maximum(bound, inside + outside)
    return np.minimum(bound, 1.0)


@lru_cache(maxsize=4096)
def _critical(n: int, target: float, delta: float) -> tuple[float, np.ndarray]:
    if n <= 0:
        return -math.inf, np.zeros(0, dtype=np.int64)
    centre = NormalDist().inv_cdf(min(delta, 0.5))
    fine = np.round(np.arange(centre - 1.0, min(centre + 0.3, -Z_GRID) + 1e-9, Z_GRID), 6)
    grid = np.concatenate([np.linspace(-2 * math.sqrt(n) - 1, centre - 1.0, 30, endpoint=False), fine])
    grid = grid[grid < 0]
    first_c = _first_rejected_c(n, _statistic_table(n, target), grid)
    allowed = np.flatnonzero(_size_bounds(n, target, first_c) <= delta)
    if not allowed.size:
        return -math.inf, np.zeros(0, dtype=np.int64)
    best = int(allowed[-1])
    return float(grid[best]), first_c[best]


def critical_value(n: int, target: float, delta: float) -> float:
    """z*(N, t, delta): the largest z on a 0.01 grid with U(z) <= delta; -inf when none (N too small)."""
    return _critical(n, target, delta)[0]


def rejection_boundary(n: int, target: float, delta: float) -> np.ndarray:
    """[B]: the least C of the rejection region {Z <= z*} at each B, for N = n items (empty: none)."""
    return _critical(n, target, delta)[1]


def items_to_reject(
    rates: tuple[float, float, float, float], target: float, delta: float, limit: int = 10**6
) -> int | None:
    """How many items, with the four cells' shares `rates` (A, B, C, D), the test needs to reject: an
    estimate at those rates, not a promise. None when their mean loss is not below 0 or more than `limit`
    would be needed. Beyond 4,096 counted items the normal critical value stands in for z*."""
    a, b, c, d = rates
    if (target - 1) * a + target * b - c >= 0 or d >= 1:
        return None
    normal = NormalDist().inv_cdf(delta) - STEP

    def rejected(items: int) -> bool:
        counted = test_size(math.floor(items * (1 - d) + 1e-9))
        if counted == 0:
            return False
        share = a + b + c
        cells = [round(counted * rate / share) for rate in (a, b, c)]
        cells[0] = counted - cells[1] - cells[2]
        if counted <= 4096:
            return bool(rejects(*cells, target, delta)[0])
        return float(statistic(*cells, target)) <= normal

    high = 8
    while not rejected(high):
        if high >= limit:
            return None
        high = min(limit, high * 2)
    low = high // 2
    while high - low > max(1, high // 200):  # to within 0.5%
        middle = (low + high) // 2
        if rejected(middle):
            high = middle
        else:
            low = middle
    return high
