"""Summary statistics of repeated measurements.

The headline is the median with its interquartile range, as in pyperf; min,
max, mean and standard deviation stand beside it. Percentiles use linear
interpolation between order statistics (the common "type 7" definition).
The median's 95% confidence interval is distribution-free: the order
statistics whose ranks a Binomial(n, 1/2) brackets with >= 95% probability.
Outliers are counted with Tukey's fences and never dropped.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from scipy.stats import binom


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    p25: float
    p75: float
    min: float
    max: float
    mean: float
    stdev: float | None
    ci95_low: float | None
    ci95_high: float | None
    outliers: int

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def iqr(self) -> float:
        return self.p75 - self.p25


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in [0, 1])."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return float(sorted_values[lo])
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def median_ci(sorted_values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free CI of the median; None when n is too small to reach the level."""
    n = len(sorted_values)
    alpha = 1 - confidence
    # Largest k with P(B <= k - 1) <= alpha / 2, B ~ Binomial(n, 1/2):
    # then [x_(k), x_(n-k+1)] (1-based) covers the median with >= confidence.
    k = int(binom.ppf(alpha / 2, n, 0.5))
    while k > 0 and binom.cdf(k - 1, n, 0.5) > alpha / 2:
        k -= 1
    if k < 1:
        return None
    return float(sorted_values[k - 1]), float(sorted_values[n - k])


def tukey_outliers(sorted_values: Sequence[float]) -> int:
    """Values beyond 1.5 IQR from the quartiles."""
    if len(sorted_values) < 4:
        return 0
    q1, q3 = percentile(sorted_values, 0.25), percentile(sorted_values, 0.75)
    fence = 1.5 * (q3 - q1)
    return sum(1 for v in sorted_values if v < q1 - fence or v > q3 + fence)


def summarize(values: Sequence[float | int | None]) -> Summary | None:
    """Summary of the present values; None when there are none."""
    data = sorted(float(v) for v in values if v is not None)
    if not data:
        return None
    ci = median_ci(data)
    return Summary(
        n=len(data),
        median=percentile(data, 0.5),
        p25=percentile(data, 0.25),
        p75=percentile(data, 0.75),
        min=data[0],
        max=data[-1],
        mean=statistics.fmean(data),
        stdev=statistics.stdev(data) if len(data) > 1 else None,
        ci95_low=ci[0] if ci else None,
        ci95_high=ci[1] if ci else None,
        outliers=tukey_outliers(data),
    )


def spread_warning(summary: Summary, max_relative_iqr: float = 0.1) -> str | None:
    """A warning when the spread is too wide for the number of repetitions."""
    if summary.median == 0:
        return None
    rel = summary.iqr / abs(summary.median)
    if summary.outliers:
        note = f"{summary.outliers} outlier(s) by Tukey's fences (kept)"
    else:
        note = None
    if rel > max_relative_iqr and summary.n < 30:
        advice = max(10, min(100, math.ceil(summary.n * (rel / max_relative_iqr) ** 2)))
        wide = f"IQR is {rel:.0%} of the median with n={summary.n}; run about {advice} repetitions"
        return f"{wide}; {note}" if note else wide
    return note
