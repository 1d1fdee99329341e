"""Verdict statistics: intervals, p-values, equivalence, multiplicity and power.

Every estimate carries its standard error and degrees of freedom, so a registered test
(`normtheory.claims`) can be applied to it: one-sided t-tests for directional claims, two one-sided
tests (TOST) for equivalence, Holm's correction across a claim's rows, and the minimum detectable
effect at 80 % power for an inconclusive row. `normtheory.verdicts` does the deciding.

No interval of width zero decides anything: when every sample is equal (e.g. a quantity read off
a grid) `mean_ci` widens the standard error to the grid's resolution (`resolution`, the
quantization error's sd r/√12), or returns no interval at all.
"""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.power import TTestPower

EXACT = ("exact-holds", "exact-fails")
NOT_TESTABLE = "not testable at this scale"
NOT_RUN = "not run"
VERDICTS = ("supported", "refuted", "inconclusive", NOT_TESTABLE, *EXACT, NOT_RUN)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a CI, its standard error, degrees of freedom and sample size.

    `low`/`high` are NaN when there is no interval (fewer than 2 samples, or zero spread and no
    resolution given); `se`/`df` are NaN likewise."""

    value: float
    low: float
    high: float
    n: int
    method: str
    se: float = math.nan
    df: float = math.nan


@dataclass(frozen=True)
class Verdict:
    """One row of a claim's test: a statistic, its estimate and the decision on it.

    Attributes:
        claim: claim id (see `normtheory.claims`).
        verdict: one of `VERDICTS`.
        statistic: what was estimated, in words.
        estimate, ci_low, ci_high: the statistic and its (two-sided, `level`) CI.
        level: the CI's confidence level.
        n_seeds: independent seeds behind the estimate.
        method: ``t``, ``slope``, ``max`` (exact) or ``-``.
        detail: extra context (per-condition means, caveats).
        name: the registered statistic's name ("" for rows made outside the registry).
        condition: the sub-condition of a per-condition row (e.g. ``batch_size=4``).
        primary: whether the row enters the claim-level rule.
        p_value, p_adjusted: one-sided p of the claimed effect; Holm-adjusted across the claim's
            primary rows.
        power: for an inconclusive row, what it rules out and its minimum detectable effect.
        note: a qualifier of the verdict (``underpowered``, ``below SESOI``, ``reversal``).
    """

    claim: str
    verdict: str
    statistic: str
    estimate: float
    ci_low: float
    ci_high: float
    level: float
    n_seeds: int
    method: str
    detail: str = ""
    name: str = ""
    condition: str = ""
    primary: bool = True
    p_value: float = math.nan
    p_adjusted: float = math.nan
    power: str = ""
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        """The verdict with its qualifier, e.g. ``inconclusive (underpowered)``."""
        return f"{self.verdict} ({self.note})" if self.note else self.verdict


def _clean(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def mean_ci(
    values: Sequence[float],
    *,
    level: float = 0.95,
    resolution: float = 0.0,
) -> Estimate:
    """Mean of `values` (one per independent seed) with a Student-t CI; non-finite values are
    dropped.

    Args:
        values: one number per seed (or per paired seed difference).
        level: confidence level in (0, 1).
        resolution: the grid step the values are quantized to (0: continuous). The sample sd is
            floored at resolution/√12, the sd of a uniform quantization error, so equal values
            read off a grid give an interval as wide as the grid allows, never [x, x]. With no
            resolution, zero spread gives no interval (method ``zero-spread``).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if resolution < 0:
        raise ValueError(f"resolution must be ≥ 0, got {resolution}")
    arr = _clean(values)
    n = len(arr)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "t")
    mean = float(arr.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n, "t")
    sd = float(arr.std(ddof=1))
    if np.ptp(arr) <= 1e-12 * max(1.0, abs(mean)):  # equal up to rounding: no spread
        sd = 0.0
    sd = max(sd, resolution / math.sqrt(12))
    if sd == 0:
        return Estimate(mean, math.nan, math.nan, n, "zero-spread")
    se, df = sd / math.sqrt(n), n - 1
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return Estimate(mean, mean - half, mean + half, n, "t", se, df)


def paired_diff_ci(a: Sequence[float], b: Sequence[float], **kw) -> Estimate:
    """Mean of a − b over paired samples (e.g. the same seed) with a CI; see `mean_ci`."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal shapes, got {a.shape} and {b.shape}")
    return mean_ci(a - b, **kw)


def slope_ci(x: Sequence[float], y: Sequence[float], *, level: float = 0.95) -> Estimate:
    """Least-squares slope of y on x with a t CI (scipy.stats.linregress); n = points used."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    if n < 3 or np.ptp(x) == 0:
        slope = float(stats.linregress(x, y).slope) if n >= 2 and np.ptp(x) > 0 else math.nan
        return Estimate(slope, math.nan, math.nan, n, "slope")
    fit = stats.linregress(x, y)
    if fit.stderr == 0:
        return Estimate(float(fit.slope), math.nan, math.nan, n, "zero-spread")
    half = stats.t.ppf(0.5 + level / 2, n - 2) * fit.stderr
    return Estimate(
        float(fit.slope),
        float(fit.slope - half),
        float(fit.slope + half),
        n,
        "slope",
        float(fit.stderr),
        n - 2,
    )


def _t(est: Estimate, null: float) -> float:
    return (est.value - null) / est.se


def p_greater(est: Estimate, null: float = 0.0) -> float:
    """One-sided p-value of H0: μ ≤ null against μ > null (NaN without a standard error)."""
    if not (est.se > 0 and est.df > 0):
        return math.nan
    return float(stats.t.sf(_t(est, null), est.df))


def p_less(est: Estimate, null: float = 0.0) -> float:
    """One-sided p-value of H0: μ ≥ null against μ < null."""
    if not (est.se > 0 and est.df > 0):
        return math.nan
    return float(stats.t.cdf(_t(est, null), est.df))


def p_two_sided(est: Estimate, null: float = 0.0) -> float:
    """Two-sided p-value of H0: μ = null."""
    if not (est.se > 0 and est.df > 0):
        return math.nan
    return float(2 * stats.t.sf(abs(_t(est, null)), est.df))


def p_tost(est: Estimate, low: float, high: float) -> float:
    """Two one-sided tests: p-value of H0: μ ≤ low or μ ≥ high against low < μ < high
    (the larger of the two one-sided p-values)."""
    return max(p_greater(est, low), p_less(est, high))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values; NaN entries stay NaN and do not count.

    The step-down rule itself (the i-th smallest p times m − i + 1, made monotone, capped at 1):
    statsmodels' ``multipletests(method="holm")`` gives the same numbers (tested) but calls
    ``gc.collect()`` on every call, 0.1–1.5 s each, which dominated judging a study."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        scaled = p[order] * np.arange(len(order), 0, -1)
        out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out.tolist()


def mde(
    sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8, alternative: str = "larger"
) -> float:
    """Minimum detectable effect of a one-sample (or paired) t-test: the smallest true mean
    shift that a test at level `alpha` detects with probability `power` given `n` samples of
    standard deviation `sd` (statsmodels' noncentral-t power solver, times sd).
    `alternative`: ``larger`` (one-sided) or ``two-sided``. NaN when n < 2 or sd is not > 0."""
    if n < 2 or not (sd > 0):
        return math.nan
    d = TTestPower().solve_power(
        effect_size=None, nobs=n, alpha=alpha, power=power, alternative=alternative
    )
    return float(d) * sd


def exact(
    claim: str,
    statistic: str,
    value: float,
    tolerance: float,
    *,
    n: int,
    detail: str = "",
    name: str = "",
) -> Verdict:
    """The verdict of an exact claim: ``exact-holds`` when the worst deviation `value`
    (e.g. the largest relative residual over all steps and seeds) is at most `tolerance`
    (the floating-point precision the claim is checked at), else ``exact-fails``; a
    non-finite value fails. `n`: seeds (or runs) the maximum was taken over."""
    holds = math.isfinite(value) and abs(value) <= tolerance
    return Verdict(
        claim=claim,
        verdict=EXACT[0] if holds else EXACT[1],
        statistic=f"{statistic} (tolerance {tolerance:g})",
        estimate=float(value),
        ci_low=math.nan,
        ci_high=math.nan,
        level=math.nan,
        n_seeds=n,
        method="max",
        detail=detail,
        name=name,
    )


def not_run(claim: str, reason: str) -> Verdict:
    """A placeholder verdict for a claim whose data is missing (shown as 'not run')."""
    return Verdict(claim, NOT_RUN, reason, math.nan, math.nan, math.nan, math.nan, 0, "-", reason)
