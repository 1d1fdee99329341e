"""A figure of a user's own run in one line: `plot_records` draws a `Monitor`'s records over steps.

    monitor = Monitor(model, hooks)            # ... train ...
    plot_records(monitor.frame(), metrics=["hessian.eig", "orth.ratio"]).savefig("run.png")

It takes the tidy records (``monitor.frame()``, a sink's CSV/Parquet table) or their wide view
(``monitor.frame(pivot=True)``), draws one panel per metric, one line per key (a layer, a
parameter, an eigenvalue's rank), and says "missing: <metric>" in the panel of a metric that
was never recorded. Pure: the frame is never modified.
"""

from collections.abc import Sequence

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from normtheory.hooks.sinks import COLUMNS, pivot_records
from normtheory.plots.layout import finish, missing_panel, panels
from normtheory.plots.style import hue_palette

MAX_KEYS = 12  # lines per panel; more (a density's quadrature nodes) are summarized by the first


def _wide(frame: pd.DataFrame) -> pd.DataFrame:
    """The wide view of `frame`, tidy or already wide (indexed by step)."""
    if set(COLUMNS) <= set(frame.columns):
        return pivot_records(frame[COLUMNS])
    if frame.index.name != "step":
        raise ValueError(
            "plot_records takes the tidy records (columns step, metric, key, value) or their "
            "wide view (monitor.frame(pivot=True), indexed by step); got columns "
            f"{list(frame.columns)[:6]} and index {frame.index.name!r}"
        )
    return frame


def _series(wide: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The long rows (step, key, value) of `metric`'s columns: the column ``metric`` (key "")
    and every ``metric/<key>``; NaN cells dropped, so sparse metrics draw unbroken lines."""
    columns = [c for c in wide.columns if c == metric or c.startswith(f"{metric}/")]
    parts = []
    for column in columns[:MAX_KEYS]:
        values = wide[column].dropna()
        key = column[len(metric) + 1 :] if column != metric else ""
        parts.append(pd.DataFrame({"step": values.index, "key": key, "value": values.to_numpy()}))
    if not parts:
        return pd.DataFrame(columns=["step", "key", "value"])
    return pd.concat(parts, ignore_index=True)


def plot_records(
    frame: pd.DataFrame,
    metrics: Sequence[str],
    *,
    title: str = "",
    logy: bool | Sequence[str] = False,
) -> Figure:
    """Each metric over training steps, one panel per metric, one line per key.

    Args:
        frame: tidy records or their wide view (see the module docstring).
        metrics: the metrics to draw, each a full metric name (``"hessian.eig"``, every key
            of it; at most `MAX_KEYS` keys are drawn) or one column of the wide view
            (``"hessian.eig/1"``).
        title: the figure's title.
        logy: a log y axis on every panel (True), or on the panels of the metrics named.

    Returns:
        The figure; a metric without any record gets a visible "missing: <metric>" panel.
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    if not metrics:
        raise ValueError("plot_records: name at least one metric, e.g. metrics=['orth.ratio']")
    wide = _wide(frame)
    fig, axes = panels(len(metrics), sharex=True, title=title)
    logs = set(metrics) if logy is True else set(logy or ())
    for ax, metric in zip(axes, metrics):
        rows = _series(wide, metric)
        if rows.empty:
            missing_panel(ax, metric)
            ax.set_title(metric)
            continue
        keys = list(dict.fromkeys(rows.key))
        many = len(keys) > 1
        sns.lineplot(
            data=rows,
            x="step",
            y="value",
            hue="key" if many else None,
            hue_order=keys if many else None,
            palette=hue_palette(keys, column="key") if many else None,
            marker="o" if rows.step.nunique() <= 20 else None,
            ax=ax,
            legend=many,
        )
        if metric in logs:
            ax.set_yscale("log")
        else:  # values such as 0.9995 read as themselves, not as an offset
            ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_title(metric)
        ax.set_ylabel("")
    return finish(fig, axes, xlabel="step", legend="each", legend_kw={"fontsize": "small"})
