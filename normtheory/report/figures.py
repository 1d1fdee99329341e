"""Shared figure helpers: one colour per norm across every figure, a 'missing data' panel.

Figure functions are pure: ``(Results) -> Figure``; they never mutate the frames they read.
"""

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.hashsalt"] = "normtheory"  # reproducible SVG ids

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from normtheory.report.data import attach_data  # noqa: E402

NORM_ORDER = (
    "batch",
    "ghost_batch",
    "batch_group",
    "group",
    "group+ws",
    "layer",
    "layer+ws",
    "instance",
    "frn",
    "none",
    "batch+ws",
)
# tab10 in NORM_ORDER, except "none" (the baseline in most figures): near-black, since tab10's
# 10th colour (cyan) is hard to tell from BN's blue; "batch+ws" takes the cyan instead.
_TAB10 = sns.color_palette("tab10", 10)
_PALETTE = dict(zip(NORM_ORDER, [*_TAB10[:9], (0.15, 0.15, 0.15), _TAB10[9]]))


def norm_palette(norms) -> dict:
    """Colour per norm spec, the same in every figure (unknown specs get extra colours)."""
    extra = iter(sns.color_palette("Set2", 8))
    return {n: _PALETTE.get(n) or next(extra) for n in norms}


def norm_order(norms) -> list[str]:
    """Norm specs in the canonical order used by legends."""
    known = [n for n in NORM_ORDER if n in set(norms)]
    return known + sorted(set(norms) - set(known))


def require_columns(frame: pd.DataFrame, columns, what: str) -> list[str]:
    """The columns of `columns` missing from `frame` (for a visible 'missing' panel)."""
    return [c for c in columns if c not in frame.columns] or (
        [] if len(frame) else [f"rows of {what}"]
    )


def missing_figure(title: str, missing) -> plt.Figure:
    """A figure that says loudly what is missing instead of an empty plot."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.text(
        0.5,
        0.5,
        f"missing: {', '.join(map(str, missing))}",
        ha="center",
        va="center",
        color="crimson",
        fontsize=12,
        wrap=True,
    )
    ax.set_title(title)
    ax.set_axis_off()
    return fig


def summarize_ci(
    frame: pd.DataFrame, by: list[str], y: str, level: float = 0.95, *, log: bool = False
) -> pd.DataFrame:
    """Mean of `y` per group of `by` with the Student-t CI over seeds (the verdicts' interval).

    With ``log=True`` the interval is computed on log(y) and mapped back (geometric mean and a
    multiplicative CI): the right summary for positive quantities drawn on log axes and compared
    by log ratios; non-positive values are dropped.
    """
    from normtheory.stats import mean_ci

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
    return pd.DataFrame(rows)


def ci_line(
    ax, summary: pd.DataFrame, x: str, *, color, label=None, clip=(None, None), **kw
) -> None:
    """Draws `summary` (from `summarize_ci`) as a line with markers and a CI band.

    `clip` bounds the band to the quantity's valid range (e.g. (0, 1) for an error rate).
    """
    summary = summary.sort_values(x)
    ax.plot(summary[x], summary["mean"], marker="o", color=color, label=label, **kw)
    low, high = summary["low"].clip(lower=clip[0]), summary["high"].clip(upper=clip[1])
    ax.fill_between(summary[x], low, high, color=color, alpha=0.2, linewidth=0)


def metric_panels(
    records: pd.DataFrame,
    panels: dict[str, str],
    *,
    x: str = "step",
    hue: str = "norm",
    logy: bool = True,
    title: str = "",
    key: str | None = None,
) -> plt.Figure:
    """One panel per metric (``metric -> y label``): mean over seeds vs `x` with a t-CI band, a
    line per `hue` value in the norm colours; with `logy`, geometric means and log-space CIs.
    Missing metrics get a visible 'missing' panel. The summaries drawn are attached as the
    figure's data (`normtheory.report.data.attach_data`)."""
    hues = norm_order(records[hue].dropna().unique()) if hue in records else []
    palette = norm_palette(hues)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    drawn = []
    for ax, (metric, label) in zip(axes[0], panels.items()):
        rows = records[records["metric"] == metric]
        if key is not None:
            rows = rows[rows["key"] == key]
        if rows.empty:
            ax.text(
                0.5,
                0.5,
                f"missing: {metric}",
                ha="center",
                va="center",
                color="crimson",
                transform=ax.transAxes,
            )
            ax.set_axis_off()
            continue
        for h in hues:
            sub = rows[rows[hue] == h]
            if len(sub):
                per_seed = sub.groupby([x, "seed"], as_index=False)["value"].mean()
                summary = summarize_ci(per_seed, [x], "value", log=logy)
                ci_line(ax, summary, x, color=palette[h], label=str(h), markersize=3)
                drawn.append(summary.assign(metric=metric, ylabel=label, **{hue: h}))
        if logy:
            ax.set_yscale("log")
        ax.set(xlabel=x.replace("_", " "), ylabel=label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, title=hue, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if drawn:
        attach_data(fig, pd.concat(drawn, ignore_index=True))
    return fig


def exact_checks_figure(verdicts: pd.DataFrame) -> plt.Figure:
    """The exact checks (`normtheory verify`): each claim's measured error against its tolerance,
    log scale (errors span 1e-17 … 1e-1); an error of exactly 0 is drawn at the axis floor.

    Needs columns claim, verdict, estimate, statistic (a `Verdict` per row)."""
    missing = require_columns(verdicts, ["claim", "verdict", "estimate", "statistic"], "verdicts")
    if missing:
        return missing_figure("exact checks", missing)
    table = verdicts.assign(
        tolerance=verdicts["statistic"].str.extract(r"tolerance ([0-9.eE+-]+)")[0].astype(float)
    ).iloc[::-1]
    floor = 1e-18
    error = table["estimate"].abs().clip(lower=floor)
    colors = ["seagreen" if v == "exact-holds" else "crimson" for v in table["verdict"]]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(table) + 1.4))
    y = np.arange(len(table))
    ax.scatter(error, y, color=colors, zorder=3, label="measured error")
    ax.scatter(table["tolerance"], y, marker="|", s=300, color="k", label="tolerance")
    for yi, e, t in zip(y, error, table["tolerance"]):
        ax.plot([e, t], [yi, yi], color="0.8", lw=1, zorder=1)
    ax.axvline(2.2e-16, color="0.5", ls=":", lw=1, label="float64 ε")
    ax.set_yticks(y, table["claim"])
    ax.set_xscale("log")
    ax.set_xlim(floor / 3, 1)
    ax.set(xlabel="error (relative; IC-*: |ratio − claim|), log scale", title="")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="upper right", fontsize=8)
    fig.suptitle("Exact checks: measured error vs tolerance (green: holds, red: fails)")
    fig.tight_layout()
    return attach_data(fig, table[["claim", "verdict", "estimate", "tolerance", "statistic"]])
