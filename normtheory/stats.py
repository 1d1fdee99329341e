"""Verdict statistics shared by every study.

The rule: a claim predicts the sign of a statistic (``direction="greater"``: > 0, ``"less"``:
< 0). The statistic is estimated over seeds with a confidence interval; the claim is
*supported* if the CI excludes 0 in the claimed direction, *refuted* if it excludes 0 the other
way, otherwise *inconclusive*. With fewer than two seeds there is no interval: inconclusive.
"""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

DIRECTIONS = ("greater", "less")
VERDICTS = ("supported", "refuted", "inconclusive")
EXACT = ("exact-holds", "exact-fails")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval and the number of samples behind it."""

    value: float
    low: float
    high: float
    n: int
    method: str


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict with its statistic.

    Attributes:
        claim: claim id (see `normtheory.claims`).
        verdict: supported / refuted / inconclusive.
        statistic: what was estimated, in words (e.g. "BN error rise − GN error rise, 2→32").
        estimate, ci_low, ci_high: the statistic and its CI.
        level: the CI's confidence level.
        n_seeds: samples behind the CI.
        method: ``t`` or ``bootstrap`` or ``slope``.
        detail: extra context for the report (preconditions, scale caveats, sub-statistics).
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

    def to_dict(self) -> dict:
        return asdict(self)


def _clean(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def mean_ci(
    values: Sequence[float],
    *,
    level: float = 0.95,
    method: str = "t",
    n_boot: int = 9999,
    seed: int = 0,
) -> Estimate:
    """Mean of `values` with a t or percentile-bootstrap CI (non-finite values are dropped).

    Args:
        values: one number per seed (or per paired seed difference).
        level: confidence level in (0, 1).
        method: ``t`` (Student t interval) or ``bootstrap`` (scipy's BCa bootstrap).
    """
    if method not in ("t", "bootstrap"):
        raise ValueError(f"unknown CI method {method!r}; valid: t, bootstrap")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    arr = _clean(values)
    n = len(arr)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, method)
    mean = float(arr.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n, method)
    if np.ptp(arr) == 0:
        return Estimate(mean, mean, mean, n, method)
    if method == "t":
        low, high = stats.t.interval(level, n - 1, loc=mean, scale=stats.sem(arr))
    else:
        res = stats.bootstrap(
            (arr,),
            np.mean,
            confidence_level=level,
            n_resamples=n_boot,
            rng=np.random.default_rng(seed),
        )
        low, high = res.confidence_interval
    return Estimate(mean, float(low), float(high), n, method)


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
    half = stats.t.ppf(0.5 + level / 2, n - 2) * fit.stderr
    return Estimate(float(fit.slope), float(fit.slope - half), float(fit.slope + half), n, "slope")


def decide(low: float, high: float, direction: str) -> str:
    """Supported / refuted / inconclusive from a CI and the claimed sign of the statistic."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)}")
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if low > 0:
        return "supported" if direction == "greater" else "refuted"
    if high < 0:
        return "supported" if direction == "less" else "refuted"
    return "inconclusive"


def verdict(
    claim: str,
    statistic: str,
    estimate: Estimate,
    direction: str,
    *,
    level: float = 0.95,
    detail: str = "",
) -> Verdict:
    """Packs an `Estimate` and the claimed direction into a `Verdict`."""
    return Verdict(
        claim=claim,
        verdict=decide(estimate.low, estimate.high, direction),
        statistic=statistic,
        estimate=estimate.value,
        ci_low=estimate.low,
        ci_high=estimate.high,
        level=level,
        n_seeds=estimate.n,
        method=estimate.method,
        detail=detail,
    )


def equivalence(
    claim: str,
    statistic: str,
    estimate: Estimate,
    target: float,
    margin: float,
    *,
    level: float = 0.95,
    detail: str = "",
) -> Verdict:
    """The verdict of a claim that a statistic equals `target` (e.g. a fitted slope of 1):
    *supported* when the whole CI lies within target ± margin (equivalence, as two one-sided
    tests), *refuted* when the whole CI lies outside it, else *inconclusive*."""
    low, high = estimate.low, estimate.high
    if not (math.isfinite(low) and math.isfinite(high)):
        decision = "inconclusive"
    elif target - margin <= low and high <= target + margin:
        decision = "supported"
    elif high < target - margin or low > target + margin:
        decision = "refuted"
    else:
        decision = "inconclusive"
    return Verdict(
        claim=claim,
        verdict=decision,
        statistic=f"{statistic} (claim: {target:g} ± {margin:g})",
        estimate=estimate.value,
        ci_low=low,
        ci_high=high,
        level=level,
        n_seeds=estimate.n,
        method=estimate.method,
        detail=detail,
    )


def exact(
    claim: str,
    statistic: str,
    value: float,
    tolerance: float,
    *,
    n: int,
    detail: str = "",
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
    )


def not_run(claim: str, reason: str) -> Verdict:
    """A placeholder verdict for a claim whose data is missing (shown as 'not run')."""
    return Verdict(claim, "not run", reason, math.nan, math.nan, math.nan, math.nan, 0, "-", reason)
