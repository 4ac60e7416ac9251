"""Drift statistics between two windows of a label's values: population stability index and chi-square.

Both compare the counts of each value in a reference window with those in a current window.

- PSI = sum over values of (c - r) * ln(c / r), with r and c each value's share of its window. A
  value absent from one window would make the logarithm infinite, so an empty bin counts as the
  share ``PSI_EPSILON`` (1e-4, about one label in ten thousand) instead of 0. Rules of thumb:
  below 0.1 stable, 0.1 to 0.2 a moderate shift, above 0.2 a significant one (the default alert).
- Chi-square: Pearson's test of independence of window and value on the 2 x k table of counts
  (scipy's ``chi2_contingency``, without Yates' continuity correction, so the statistic is the
  same plain Pearson sum for two values as for more). Its p-value says how likely counts at least
  this different are if both windows came from one distribution. On large windows tiny shifts
  become "significant", which is why alerts also need ``min_labels`` and PSI reads the size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

PSI_EPSILON = 1e-4

Counts = Mapping[str, int]


@dataclass(frozen=True)
class ChiSquare:
    statistic: float
    p_value: float
    dof: int


def shares(counts: Counts, values: list[str], *, epsilon: float = PSI_EPSILON) -> list[float]:
    """Each value's share of the window, an empty bin counted as ``epsilon``."""
    total = sum(counts.values())
    return [counts.get(value, 0) / total or epsilon if total else epsilon for value in values]


def psi(reference: Counts, current: Counts, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of the current counts against the reference counts."""
    values = sorted(set(reference) | set(current))
    before, after = shares(reference, values, epsilon=epsilon), shares(current, values, epsilon=epsilon)
    return sum((c - r) * math.log(c / r) for r, c in zip(before, after, strict=True))


def chi_square(reference: Counts, current: Counts) -> ChiSquare:
    """Pearson's chi-square test of one distribution for both windows.

    Values seen in neither window are left out; with fewer than two values left, the windows
    cannot differ (statistic 0, p-value 1)."""
    from scipy.stats import chi2_contingency

    values = sorted(v for v in set(reference) | set(current) if reference.get(v, 0) + current.get(v, 0) > 0)
    if len(values) < 2 or not sum(reference.values()) or not sum(current.values()):
        return ChiSquare(0.0, 1.0, 0)
    table = [[reference.get(v, 0) for v in values], [current.get(v, 0) for v in values]]
    result = chi2_contingency(table, correction=False)
    return ChiSquare(float(result.statistic), float(result.pvalue), int(result.dof))
