"""Verdict statistics against closed forms (scipy's t quantiles, exact slopes)."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from normtheory.stats import decide, mean_ci, paired_diff_ci, slope_ci, verdict


def test_t_interval_matches_formula():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    est = mean_ci(x)
    half = sps.t.ppf(0.975, 3) * x.std(ddof=1) / 2
    assert (
        est.value == pytest.approx(3.5)
        and est.low == pytest.approx(3.5 - half)
        and est.high == pytest.approx(3.5 + half)
    )


def test_bootstrap_interval_contains_mean_and_is_narrower_for_tight_data():
    rng = np.random.default_rng(0)
    wide, tight = (
        mean_ci(rng.normal(0, 1, 50), method="bootstrap"),
        mean_ci(rng.normal(0, 0.1, 50), method="bootstrap"),
    )
    assert wide.low < wide.value < wide.high
    assert (tight.high - tight.low) < (wide.high - wide.low) / 5


def test_too_few_seeds_is_inconclusive_and_nans_dropped():
    one = mean_ci([0.3, math.nan])
    assert one.n == 1 and math.isnan(one.low)
    assert verdict("GN-BATCH", "s", one, "greater").verdict == "inconclusive"


def test_decide_rule():
    assert decide(0.1, 0.2, "greater") == "supported"
    assert decide(0.1, 0.2, "less") == "refuted"
    assert decide(-0.2, -0.1, "less") == "supported"
    assert decide(-0.1, 0.1, "greater") == "inconclusive"
    with pytest.raises(ValueError, match="sideways"):
        decide(0, 1, "sideways")


def test_paired_difference_and_slope():
    est = paired_diff_ci([3.0, 4.0, 5.0], [1.0, 2.0, 3.5])
    assert est.value == pytest.approx(np.mean([2.0, 2.0, 1.5]))
    x = np.arange(10.0)
    exact = slope_ci(x, 2 * x + 1)
    assert exact.value == pytest.approx(2.0) and exact.high - exact.low == pytest.approx(
        0, abs=1e-9
    )
    noisy = slope_ci(x, 2 * x + np.random.default_rng(1).normal(0, 1, 10))
    assert noisy.low < 2.0 < noisy.high
    with pytest.raises(ValueError, match="shapes"):
        paired_diff_ci([1, 2], [1])


def test_exact_verdict_holds_within_tolerance_only():
    from normtheory.stats import exact

    assert exact("SPAN-ORTH", "max drift", 3e-7, 1e-5, n=3).verdict == "exact-holds"
    assert exact("SPAN-ORTH", "max drift", -3e-7, 1e-5, n=3).verdict == "exact-holds"
    fails = exact("SPAN-ORTH", "max drift", 2e-5, 1e-5, n=3)
    assert fails.verdict == "exact-fails" and "tolerance 1e-05" in fails.statistic
    assert exact("SPAN-ORTH", "max drift", math.nan, 1e-5, n=3).verdict == "exact-fails"


def test_equivalence_verdict():
    from normtheory.stats import Estimate, equivalence

    def est(low, high):
        return Estimate((low + high) / 2, low, high, 3, "t")

    assert equivalence("IC-CORR", "slope", est(0.97, 1.02), 1.0, 0.05).verdict == "supported"
    assert equivalence("IC-CORR", "slope", est(0.97, 1.08), 1.0, 0.05).verdict == "inconclusive"
    assert equivalence("IC-CORR", "slope", est(1.06, 1.2), 1.0, 0.05).verdict == "refuted"
    assert equivalence("IC-CORR", "slope", est(0.5, 0.9), 1.0, 0.05).verdict == "refuted"
    v = equivalence("IC-CORR", "slope", Estimate(1.0, math.nan, math.nan, 1, "t"), 1.0, 0.05)
    assert v.verdict == "inconclusive" and "claim: 1 ± 0.05" in v.statistic
