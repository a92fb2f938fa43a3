"""Exact binomial tails in pure Python: the p-values and bounds Learn-then-Test needs for a 0/1 loss."""

from __future__ import annotations

import math


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed exactly in log space."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    terms = [base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(term - top) for term in terms))


def binomial_p_value(losses: int, n: int, alpha: float) -> float:
    """The exact (Clopper-Pearson) p-value of H0: risk > alpha after `losses` in `n` draws, P(Bin(n, alpha)
    <= losses). Valid: under H0 the true risk exceeds alpha and the count is stochastically larger."""
    if n == 0:
        return 1.0
    return binomial_cdf(losses, n, alpha)


def clopper_pearson_upper(losses: int, n: int, confidence: float) -> float:
    """The one-sided Clopper-Pearson upper bound on a rate: the p with P(Bin(n, p) <= losses) = 1 - confidence
    (the Beta(losses + 1, n - losses) quantile), found by bisection."""
    if n == 0 or losses >= n:
        return 1.0
    low, high = losses / n, 1.0
    for _ in range(100):
        middle = (low + high) / 2
        if binomial_cdf(losses, n, middle) > 1 - confidence:
            low = middle
        else:
            high = middle
    return high


def trials_to_reject(rate: float, alpha: float, delta: float, limit: int = 10**6) -> int | None:
    """How many draws, with losses at `rate` (the observed share), the exact test of H0: risk > alpha needs
    to reject at delta: the fewest n with P(Bin(n, alpha) <= floor(n x rate)) <= delta. None when `rate`
    is not below alpha (no number would do) or more than `limit` would be needed."""
    if rate >= alpha:
        return None

    def rejects(n: int) -> bool:
        return binomial_p_value(math.floor(n * rate + 1e-9), n, alpha) <= delta

    high = 16
    while not rejects(high):
        if high >= limit:
            return None
        high = min(limit, high * 2)
    low = high // 2
    while high - low > max(1, high // 200):  # to within 0.5%: an estimate at the rate seen, not a promise
        middle = (low + high) // 2
        if rejects(middle):
            high = middle
        else:
            low = middle
    return high
