"""Chi-square goodness of fit for the tests, with the standard library only.

The survival function of the chi-square distribution with k degrees of
freedom is the regularised upper incomplete gamma function Q(k/2, x/2). Q is
computed by its power series (through P = 1 - Q) when x < a + 1, where the
series converges fast, and by its continued fraction (modified Lentz)
otherwise, where the series would need many terms and lose precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["gamma_q", "chi2_sf", "goodness_of_fit"]

_EPS = 1e-15
_TINY = 1e-300
_MAX_TERMS = 100_000


def _log_prefactor(a: float, x: float) -> float:
    """log(x^a e^-x / Γ(a)), the factor both expansions share."""
    return a * math.log(x) - x - math.lgamma(a)


def _lower_series(a: float, x: float) -> float:
    """P(a, x) = x^a e^-x / Γ(a+1) · Σ x^n / ((a+1)…(a+n))."""
    term = total = 1.0 / a
    denominator = a
    for _ in range(_MAX_TERMS):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * math.exp(_log_prefactor(a, x))


def _upper_fraction(a: float, x: float) -> float:
    """Q(a, x) as the continued fraction 1/(x+1-a- 1·(1-a)/(x+3-a- 2·(2-a)/(x+5-a- …))), by modified Lentz."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_TERMS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return math.exp(_log_prefactor(a, x)) * h


def gamma_q(a: float, x: float) -> float:
    """The regularised upper incomplete gamma function Q(a, x) = Γ(a, x) / Γ(a), for a > 0, x >= 0."""
    if a <= 0 or x < 0:
        raise ValueError("gamma_q needs a > 0 and x >= 0")
    if x == 0:
        return 1.0
    if x < a + 1.0:
        return 1.0 - _lower_series(a, x)
    return _upper_fraction(a, x)


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X chi-square distributed with ``df`` degrees of freedom."""
    return gamma_q(df / 2.0, x / 2.0) if x > 0 else 1.0


def goodness_of_fit(observed: Sequence[int]) -> tuple[float, int, float]:
    """Pearson's test of ``observed`` counts against equal expected counts: (statistic, df, p-value)."""
    expected = sum(observed) / len(observed)
    statistic = sum((o - expected) ** 2 / expected for o in observed)
    df = len(observed) - 1
    return statistic, df, chi2_sf(statistic, df)
