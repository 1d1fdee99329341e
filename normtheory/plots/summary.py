"""Mean and 95 % Student-t interval over seeds, and how to draw them: a line with a light band
for a numeric x, points with error bars for a categorical one.

The interval is the verdicts' (`normtheory.stats.mean_ci`): for n seeds with values y_i,
ȳ ± t_{0.975, n−1} · s / √n, s the sample standard deviation; with ``log=True`` it is computed
on log y and mapped back (geometric mean, multiplicative interval).
"""

import numpy as np
import pandas as pd

from normtheory.stats import mean_ci

BAND_ALPHA = 0.2  # CI bands stay light enough not to hide the other series


def per_seed(frame: pd.DataFrame, by: list[str], y: str, agg="mean") -> pd.DataFrame:
    """One value of `y` per seed and group of `by` (rows of a seed aggregated by `agg`): the
    seeds are the independent samples, so several rows of one seed are one sample, not several.
    """
    return frame.groupby([*by, "seed"], as_index=False, sort=True)[y].agg(agg)


def summarize_ci(
    frame: pd.DataFrame, by: list[str], y: str, level: float = 0.95, *, log: bool = False
) -> pd.DataFrame:
    """Mean of `y` per group of `by` with the Student-t CI over seeds (the verdicts' interval).

    Each row is one sample: pass one row per seed (`per_seed`). With ``log=True`` the interval
    is computed on log(y) and mapped back (geometric mean and a multiplicative CI): the right
    summary for positive quantities drawn on log axes and compared by log ratios; non-positive
    values are dropped.

    Returns:
        Columns `by`, ``mean``, ``low``, ``high``, ``n``; one row per group.
    """
    rows = []
    for keys, group in frame.groupby(by, sort=True):
        values = group[y].to_numpy(dtype=float)
        if log:
            values = np.log(values[values > 0])
        est = mean_ci(values, level=level)
        mean, low, high = (
            np.exp([est.value, est.low, est.high]) if log else (est.value, est.low, est.high)
        )
        rows.append(
            {
                **dict(zip(by, keys if isinstance(keys, tuple) else (keys,))),
                "mean": mean,
                "low": low,
                "high": high,
                "n": est.n,
            }
        )
    return pd.DataFrame(rows, columns=[*by, "mean", "low", "high", "n"])


def ci_line(
    ax, summary: pd.DataFrame, x: str, *, color, label=None, clip=(None, None), **kw
) -> None:
    """Draws `summary` (from `summarize_ci`) as a line with markers and a CI band.

    `clip` bounds the band to the quantity's valid range (e.g. (0, 1) for an error rate). A
    series of one point has no band to draw, so its CI is an error bar.
    """
    summary = summary.sort_values(x)
    ax.plot(summary[x], summary["mean"], marker="o", color=color, label=label, **kw)
    low, high = summary["low"].clip(lower=clip[0]), summary["high"].clip(upper=clip[1])
    if len(summary) == 1:
        mean = summary["mean"].to_numpy()
        yerr = [mean - low.to_numpy(), high.to_numpy() - mean]
        ax.errorbar(summary[x], mean, yerr=yerr, fmt="none", ecolor=color, capsize=3)
    else:
        ax.fill_between(summary[x], low, high, color=color, alpha=BAND_ALPHA, linewidth=0)


def ci_points(
    ax,
    summary: pd.DataFrame,
    x: str,
    positions: dict,
    *,
    color,
    label=None,
    offset: float = 0.0,
    clip=(None, None),
    **kw,
) -> None:
    """Draws `summary` (from `summarize_ci`) over a categorical `x` as points with error bars
    at ``positions[x value] + offset`` (unconnected: categories have no order to interpolate).
    """
    summary = summary[summary[x].isin(list(positions))]
    low = summary["low"].clip(lower=clip[0]).fillna(summary["mean"])
    high = summary["high"].clip(upper=clip[1]).fillna(summary["mean"])
    ax.errorbar(
        summary[x].map(positions).to_numpy(dtype=float) + offset,
        summary["mean"],
        yerr=[(summary["mean"] - low).clip(lower=0), (high - summary["mean"]).clip(lower=0)],
        fmt="o",
        color=color,
        label=label,
        ms=kw.pop("ms", 5),
        capsize=kw.pop("capsize", 2),
        **kw,
    )
