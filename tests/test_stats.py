"""Statistics against values worked out by hand (the arithmetic is in each comment)."""

from __future__ import annotations

import math

import pytest

from harness.analyse.stats import median_ci, percentile, spread_warning, summarize, tukey_outliers


def test_percentile_interpolates_between_ranks() -> None:
    # type 7: position (n-1)q; [1,2,3,4] at q=.25 -> 0.75 -> 1 + .75*(2-1)
    assert percentile([1, 2, 3, 4], 0.25) == pytest.approx(1.75)
    assert percentile([1, 2, 3, 4], 0.5) == pytest.approx(2.5)
    assert percentile([1, 2, 3, 4], 0.75) == pytest.approx(3.25)
    # [10..50] at q=.1 -> position 0.4 -> 10 + .4*10
    assert percentile([10, 20, 30, 40, 50], 0.1) == pytest.approx(14.0)
    assert percentile([7], 0.9) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_median_ci_n6() -> None:
    # B ~ Bin(6, 1/2): P(B<=0) = 1/64 = .0156 <= .025 < P(B<=1) = 7/64 -> k = 1: [x1, x6], cover 62/64
    xs = [1, 2, 3, 4, 5, 6]
    assert median_ci(xs) == (1.0, 6.0)


def test_median_ci_n10() -> None:
    # P(B<=1) = 11/1024 = .0107 <= .025 < P(B<=2) = 56/1024 = .0547 -> k = 2: [x2, x9]
    xs = [float(i) for i in range(1, 11)]
    assert median_ci(xs) == (2.0, 9.0)


def test_median_ci_n20() -> None:
    # P(B<=5) = (1+20+190+1140+4845+15504)/2^20 = 21700/1048576 = .0207 <= .025;
    # P(B<=6) = 60460/1048576 = .0577 > .025 -> k = 6: [x6, x15]
    xs = [float(i) for i in range(1, 21)]
    assert median_ci(xs) == (6.0, 15.0)


def test_median_ci_too_few() -> None:
    # n=5: P(B<=0) = 1/32 = .031 > .025: no pair of order statistics reaches 95%
    assert median_ci([1, 2, 3, 4, 5]) is None


def test_tukey_counts_beyond_fences() -> None:
    # [1,2,3,4,100]: q1 = 2, q3 = 4, IQR 2, fences -1 and 7 -> only 100
    assert tukey_outliers([1, 2, 3, 4, 100]) == 1
    # [-50, 10, 11, 12, 13, 90]: q1 = 10.25, q3 = 12.75, fences 6.5 and 16.5 -> two
    assert tukey_outliers([-50, 10, 11, 12, 13, 90]) == 2
    assert tukey_outliers([1, 2, 100]) == 0  # too few to call anything an outlier


def test_summarize_hand_values() -> None:
    s = summarize([4, None, 1, 3, 2])
    assert s is not None
    assert (s.n, s.median, s.p25, s.p75, s.min, s.max, s.mean) == (4, 2.5, 1.75, 3.25, 1, 4, 2.5)
    # sample stdev of 1..4: sqrt(((1.5^2)*2 + (0.5^2)*2) / 3) = sqrt(5/3)
    assert s.stdev == pytest.approx(math.sqrt(5 / 3))
    assert s.ci95_low is None and s.outliers == 0
    assert summarize([None, None]) is None
    one = summarize([3.0])
    assert one is not None and one.stdev is None and one.n == 1


def test_spread_warning() -> None:
    tight = summarize([100, 101, 102, 103, 104])
    assert tight is not None and spread_warning(tight) is None
    # [1..5]: IQR = 4 - 2 = 2 = 67% of median 3 -> advice ceil(5 * 6.67^2) = 223, capped at 100
    wide = summarize([1, 2, 3, 4, 5])
    assert wide is not None
    assert spread_warning(wide) == "IQR is 67% of the median with n=5; run about 100 repetitions"
    outl = summarize([10, 10, 10, 10, 50])
    assert outl is not None and spread_warning(outl) == "1 outlier(s) by Tukey's fences (kept)"
    zero = summarize([0, 0, 0])
    assert zero is not None and spread_warning(zero) is None


def test_an_interrupted_cell_gets_no_advice_on_how_many_repetitions_to_run() -> None:
    """Its samples stopped short of what was asked: "run about N repetitions" would mislead."""
    from harness.run.runner import _summarise

    spread = [{"boot_s": v, "memory_bytes": None} for v in (1.0, 1.5, 2.0, 2.5, 3.0)]
    done = {"status": "ok", "samples": spread, "summary": {}, "warnings": []}
    stopped = {"status": "failed", "samples": spread, "summary": {}, "warnings": []}
    _summarise(done)
    _summarise(stopped)
    assert any("repetitions" in w for w in done["warnings"])
    assert stopped["summary"]["boot_s"]["n"] == 5, "its samples are still summarised"
    assert not any("repetitions" in w for w in stopped["warnings"])
