"""Verdict statistics against closed forms: scipy's t quantiles and one-sample t-tests, a hand
Holm procedure, the noncentral-t power of a one-sample test, exact slopes."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from normtheory.stats import (
    Estimate,
    exact,
    holm,
    mde,
    mean_ci,
    p_greater,
    p_less,
    p_tost,
    p_two_sided,
    paired_diff_ci,
    slope_ci,
)


def test_t_interval_matches_formula():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    est = mean_ci(x)
    half = sps.t.ppf(0.975, 3) * x.std(ddof=1) / 2
    assert est.value == pytest.approx(3.5)
    assert (est.low, est.high) == pytest.approx((3.5 - half, 3.5 + half))
    assert est.se == pytest.approx(x.std(ddof=1) / 2) and est.df == 3


def test_zero_spread_never_gives_a_zero_width_interval():
    """Audit regression: BN-LR read `0.498 [0.498, 0.498]` when every seed hit the same LR grid
    point, and that zero-width interval decided the claim. Equal values now give no interval
    (nothing decided) or, with the grid's resolution, an interval as wide as the grid allows."""
    same = [0.498] * 5
    none = mean_ci(same)
    assert math.isnan(none.low) and math.isnan(none.high) and none.method == "zero-spread"
    assert math.isnan(p_greater(none))
    step = math.log10(30.0 / 1e-3) / 9  # the log10 step of a 10-point geometric grid
    grid = mean_ci(same, resolution=step)
    sd = step / math.sqrt(12)
    half = sps.t.ppf(0.975, 4) * sd / math.sqrt(5)
    assert (grid.low, grid.high) == pytest.approx((0.498 - half, 0.498 + half))
    # the floor only applies below the quantization noise: a wide spread is untouched
    wide = [0.0, 1.0, 2.0, 3.0, 4.0]
    assert mean_ci(wide, resolution=0.01).se == pytest.approx(mean_ci(wide).se)


def test_too_few_seeds_and_nans():
    one = mean_ci([0.3, math.nan])
    assert one.n == 1 and math.isnan(one.low) and math.isnan(p_greater(one))
    assert mean_ci([]).n == 0


@pytest.mark.parametrize("mu", [-0.4, 0.0, 0.3])
def test_one_sided_and_two_sided_p_match_scipy_ttest(mu):
    x = np.random.default_rng(3).normal(mu, 1.0, 8)
    est = mean_ci(x)
    assert p_greater(est) == pytest.approx(sps.ttest_1samp(x, 0, alternative="greater").pvalue)
    assert p_less(est, 0.2) == pytest.approx(sps.ttest_1samp(x, 0.2, alternative="less").pvalue)
    assert p_two_sided(est) == pytest.approx(sps.ttest_1samp(x, 0).pvalue)


def test_tost_is_the_larger_one_sided_p():
    x = np.random.default_rng(4).normal(0.01, 0.02, 10)
    est = mean_ci(x)
    lo = sps.ttest_1samp(x, -0.05, alternative="greater").pvalue
    hi = sps.ttest_1samp(x, 0.05, alternative="less").pvalue
    assert p_tost(est, -0.05, 0.05) == pytest.approx(max(lo, hi))
    assert p_tost(est, -0.05, 0.05) < 0.05  # well inside the margin: equivalent
    assert p_tost(mean_ci(x + 0.05), -0.05, 0.05) > 0.05  # centred on the edge: not


def test_holm_matches_the_step_down_procedure_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005×4 = 0.02, 0.01×3 = 0.03, 0.03×2 = 0.06, 0.04×1 = 0.04 → monotone max 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    with_nan = holm([0.01, math.nan, 0.04])
    assert with_nan[0] == pytest.approx(0.02) and math.isnan(with_nan[1])
    assert with_nan[2] == pytest.approx(0.04)


@pytest.mark.parametrize("seed", range(5))
def test_holm_agrees_with_statsmodels_including_ties_and_the_cap(seed):
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 0.6, size=9)
    p[3] = p[5]  # a tie
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1].tolist(), abs=1e-15)


@pytest.mark.parametrize("n", [5, 8, 20])
def test_mde_has_80_percent_power_by_the_noncentral_t(n):
    sd, alpha = 0.03, 0.05
    effect = mde(sd, n, alpha=alpha)
    df, crit = n - 1, sps.t.ppf(1 - alpha, n - 1)
    power = sps.nct.sf(crit, df, effect / sd * math.sqrt(n))
    assert power == pytest.approx(0.8, abs=1e-4)
    # large n: the normal approximation (z_{1−α} + z_{0.8}) σ/√n
    z = (sps.norm.ppf(0.95) + sps.norm.ppf(0.8)) * sd / math.sqrt(400)
    assert mde(sd, 400) == pytest.approx(z, rel=0.01)
    assert math.isnan(mde(0.0, n)) and math.isnan(mde(sd, 1))


def test_paired_difference_and_slope():
    est = paired_diff_ci([3.0, 4.0, 5.0], [1.0, 2.0, 3.5])
    assert est.value == pytest.approx(np.mean([2.0, 2.0, 1.5]))
    x = np.arange(10.0)
    perfect = slope_ci(x, 2 * x + 1)
    assert perfect.value == pytest.approx(2.0) and math.isnan(perfect.low)  # no zero width
    noisy = slope_ci(x, 2 * x + np.random.default_rng(1).normal(0, 1, 10))
    assert noisy.low < 2.0 < noisy.high and noisy.df == 8
    assert noisy.se == pytest.approx(
        sps.linregress(x, 2 * x + np.random.default_rng(1).normal(0, 1, 10)).stderr
    )
    with pytest.raises(ValueError, match="shapes"):
        paired_diff_ci([1, 2], [1])


def test_exact_verdict_holds_within_tolerance_only():
    assert exact("SPAN-ORTH", "max drift", 3e-7, 1e-5, n=3).verdict == "exact-holds"
    assert exact("SPAN-ORTH", "max drift", -3e-7, 1e-5, n=3).verdict == "exact-holds"
    fails = exact("SPAN-ORTH", "max drift", 2e-5, 1e-5, n=3)
    assert fails.verdict == "exact-fails" and "tolerance 1e-05" in fails.statistic
    assert exact("SPAN-ORTH", "max drift", math.nan, 1e-5, n=3).verdict == "exact-fails"


def test_estimate_without_se_has_no_p_value():
    est = Estimate(1.0, 0.5, 1.5, 5, "t")  # no se/df recorded
    assert math.isnan(p_greater(est)) and math.isnan(p_tost(est, 0, 2))
