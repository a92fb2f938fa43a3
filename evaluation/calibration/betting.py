"""Betting p-values for the mean of a bounded loss (Waudby-Smith & Ramdas 2023, "Estimating means of
bounded random variables by betting", JRSS-B; the WSR p-value of Bates et al.'s RCPS and of Learn then
Test), vectorised over many hypotheses at once.

For a loss Y in [lower, upper] with upper > 0 and the null H0: E[Y] >= 0, a gambler starts with 1 and
stakes a share lambda_t of it on each item that Y_t is below 0: capital K_t = prod_{s<=t} (1 - lambda_s Y_s).
With lambda_s chosen from the items before s only (predictable) and 0 <= lambda_s < 1 / upper, K is a
nonnegative supermartingale under H0, so by Ville's inequality P(sup_t K_t >= 1/delta) <= delta: the
p-value min(1, 1 / sup_t K_t) is valid in finite samples for any distribution on [lower, upper]. No
normal approximation, no variance assumed.

Why betting rather than Hoeffding or Hoeffding-Bentkus: the bet is sized by the variance seen so far
(the WSR plug-in lambda = sqrt(2 log(1/delta) / (n sigma^2)), capped), so the test adapts to a loss that
is mostly near 0 — the cascade and the reference agree on most items — where Hoeffding pays for the
whole range [lower, upper] and Bentkus for a worst-case binomial variance. The items are bet on in an
order drawn (seeded) before looking at the losses: any fixed order keeps the guarantee.
"""

from __future__ import annotations

import math

import numpy as np

BET_CAP = 0.75  # of 1 / upper: the capital never risks more than 75% on one item


def p_values(losses: np.ndarray, *, lower: float | np.ndarray, upper: float | np.ndarray, delta: float) -> np.ndarray:
    """One p-value per row of `losses` ([k, n], each row one hypothesis' losses in betting order) for
    H0: E[Y] >= 0; `lower` and `upper` bound the losses, for all rows or one per row. An empty row has
    p-value 1."""
    losses = np.atleast_2d(np.asarray(losses, dtype=float))
    rows, n = losses.shape
    if n == 0:
        return np.ones(rows)
    lower = np.broadcast_to(np.asarray(lower, dtype=float), (rows,))[:, None]
    upper = np.broadcast_to(np.asarray(upper, dtype=float), (rows,))[:, None]
    if not (upper > 0).all() or (lower > upper).any():
        raise ValueError("need lower <= upper and upper > 0")
    counts = np.arange(1, n + 1, dtype=float)
    # Running estimates with a prior of one pseudo-item at the null's boundary (mean 0) and the widest
    # variance the range allows, shifted by one item so that each bet only sees the items before it.
    means = np.cumsum(losses, axis=1) / (counts + 1)
    spread = (upper - lower) ** 2 / 4
    variances = (spread + np.cumsum((losses - means) ** 2, axis=1)) / (counts + 1)
    previous = np.concatenate([spread, variances[:, :-1]], axis=1)
    bets = np.minimum(np.sqrt(2 * math.log(1 / delta) / (n * np.maximum(previous, 1e-12))), BET_CAP / upper)
    log_capital = np.cumsum(np.log1p(-bets * losses), axis=1)
    best = np.maximum(log_capital.max(axis=1), 0.0)
    return np.exp(-best)


def upper_bound(losses: np.ndarray, *, lower: float, upper: float, delta: float) -> float:
    """The (1 - delta) upper confidence bound on E[loss] the same test gives (in the same betting order):
    the smallest m for which H0: E[loss] >= m is rejected at delta, the loss shifted by m and its bounds
    with it (found on a grid, then refined to (upper - mean) / 10^4)."""
    losses = np.asarray(losses, dtype=float)
    if losses.size == 0:
        return upper
    low, high = float(losses.mean()), upper
    for _ in range(2):
        grid = np.linspace(low, high, 101)
        grid = grid[grid < upper]  # at m = upper no loss can exceed m: nothing left to bet on
        shifted = losses[None, :] - grid[:, None]
        rejected = p_values(shifted, lower=lower - grid, upper=upper - grid, delta=delta) <= delta
        if not rejected.any():
            return high
        first = int(np.argmax(rejected))
        if first == 0:
            return float(grid[0])
        low, high = float(grid[first - 1]), float(grid[first])
    return high


def items_to_reject(losses: np.ndarray, *, lower: float, upper: float, delta: float, limit: int = 10**6) -> int | None:
    """How many items, drawn with the rates seen in `losses` (the sample repeated, in a seeded order),
    the test needs to reject H0: E[loss] >= 0 at delta. None when the observed mean is not below 0 (no
    number of items would do) or more than `limit` would be needed."""
    losses = np.asarray(losses, dtype=float)
    if losses.size == 0 or losses.mean() >= 0:
        return None
    order = np.random.default_rng(0)

    def rejects(count: int) -> bool:
        tiled = np.resize(losses, count)
        return bool(p_values(order.permutation(tiled), lower=lower, upper=upper, delta=delta)[0] <= delta)

    high = max(2, losses.size)
    while not rejects(high):
        if high >= limit:
            return None
        high = min(limit, high * 2)
    low = high // 2 if high > 2 else 1
    if rejects(low):  # the sample itself may already reject
        low, high = 1, low
    while high - low > max(1, high // 200):  # to within 0.5%: an estimate, not a promise
        middle = (low + high) // 2
        if rejects(middle):
            high = middle
        else:
            low = middle
    return high
