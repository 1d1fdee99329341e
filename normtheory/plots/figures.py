"""Declarative figures for the patterns every study draws; each is a pure function
``(frame) -> Figure`` that never mutates its input, attaches the summaries it draws
(`normtheory.plots.data.attach_data`) and draws a visible "missing: X" when data is absent.

- `by_condition`: a final quantity vs a condition, one panel per group, mean and 95 % t-CI over
  seeds: points with error bars over a categorical x, lines with light bands over a numeric x.
- `over_steps`: recorded metrics over training, one panel per metric, one line per norm.
- `paired_change`: per-seed changes against a baseline condition, with the seeds as dots.
"""

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from normtheory.analysis import changes, metric
from normtheory.plots import layout
from normtheory.plots.data import attach_data
from normtheory.plots.layout import finish, missing_figure, missing_panel, require_columns
from normtheory.plots.style import hue_order, hue_palette, value_label
from normtheory.plots.summary import ci_line, ci_points, per_seed, summarize_ci

DODGE = 0.28  # half-width of the spread of hues around a category


def _interval(log: bool, n: int) -> str:
    mean = "geometric mean" if log else "mean"
    return f"({mean} and 95% t-CI over {n} seed{'s' if n != 1 else ''})"


def _title(title: str, log: bool, n: int) -> str:
    return f"{title}\n{_interval(log, n)}" if title else _interval(log, n)


def _words(column: str) -> str:
    return column.replace("_", " ")


def _is_categorical(values: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)


def by_condition(
    frame: pd.DataFrame,
    y: str,
    x: str,
    *,
    hue: str | None = None,
    panel: str | None = None,
    title: str = "",
    ylabel: str | None = None,
    xlabel: str | None = None,
    categorical: bool | None = None,
    log: bool = False,
    logx: bool | int = False,
    clip: tuple = (None, None),
    hline: float | None = None,
    reference=None,
    seeds: bool = False,
    order=None,
    hues=None,
    palette: dict | None = None,
    labels: dict | None = None,
    ncols: int | None = None,
    legend: str | None = "spare",
    legend_title: str | None = None,
) -> Figure:
    """`y` against `x`: mean and 95 % t-CI over seeds, one series per `hue`, one panel per
    `panel` value (at most three per row, shared y axis).

    Rows of one seed at the same (panel, hue, x) are averaged first: n is the number of seeds.

    Args:
        frame: needs columns ``seed``, `y`, `x` and `hue` / `panel` when given.
        y, x: the quantity and the condition.
        hue: the column drawn as separate series (norms in their colours); None: one series.
        panel: the column split into panels, titled in words (norms as ``"GN + WS"``).
        title: the figure's title; the interval is stated on a second line.
        ylabel, xlabel: axis labels (default: the column names in words).
        categorical: draw `x` as categories (points with error bars, hues side by side) or as
            numbers (lines with light CI bands); default: categories unless `x` is numeric.
        log: geometric means and log-space intervals on a log y axis.
        logx: numeric x on a log axis (True: base 10; an int: that base), ticks at the values.
        clip: the valid range of `y` (e.g. (0, 1)): bands and bars are cut to it.
        hline: a dashed reference level (e.g. 0 for changes, chance for a loss).
        reference: a `panel` value drawn dashed grey in every other panel (e.g. ``"batch"``).
        seeds: also draw each seed's value as a small dot.
        order, hues: the order of the `x` categories and of the hue values (default canonical).
        palette: hue value -> colour (default: the norm colours for ``norm``).
        labels: value -> legend or panel name (default `normtheory.plots.style.value_label`).
        ncols, legend, legend_title: layout (`normtheory.plots.layout.panels` and `finish`).
    """
    need = ["seed", y, x, *([hue] if hue else []), *([panel] if panel else [])]
    missing = require_columns(frame, need, y)
    if missing:
        return missing_figure(title or y, missing)
    keys = list(dict.fromkeys(k for k in (panel, hue, x) if k))
    data = per_seed(frame[[*keys, "seed", y]].dropna(subset=[y]), keys, y)
    if data.empty:
        return missing_figure(title or y, [f"values of {y}"])
    summary = summarize_ci(data, keys, y, log=log)
    categorical = _is_categorical(data[x]) if categorical is None else categorical

    def name(column, value) -> str:
        return (labels or {}).get(value, value_label(column, value))

    panel_values = hue_order(data[panel], panel) if panel else [None]
    series = list(hues or hue_order(data[hue], hue)) if hue else [None]
    color_by = hue or panel  # without hues, each panel's series takes its panel's colour
    colors = palette or (
        hue_palette(hue_order(data[color_by], color_by), color_by) if color_by else {}
    )
    levels = list(order) if order is not None else hue_order(data[x], x)
    positions = {v: i for i, v in enumerate(levels)}
    dodge = hue and hue != x and len(series) > 1
    offsets = np.linspace(-DODGE, DODGE, len(series)) if dodge else np.zeros(len(series))
    fig, axes = layout.panels(
        len(panel_values), ncols=ncols, sharey=bool(panel), sharex=bool(panel) and not categorical
    )
    drawn = []
    for ax, pv in zip(axes, panel_values):
        here = summary if pv is None else summary[summary[panel] == pv]
        raw_here = data if pv is None else data[data[panel] == pv]
        ref = summary[summary[panel] == reference] if reference is not None and panel else []
        if len(ref) and pv != reference and not categorical:
            ref = ref.sort_values(x)
            label = f"{name(panel, reference)} (reference)"
            ax.plot(ref[x], ref["mean"], "--", color="gray", label=label)
        for off, hv in zip(offsets, series):
            rows = here if hv is None else here[here[hue] == hv]
            if rows.empty:
                continue
            color = colors.get(hv if hue else pv, "0.25")
            label = name(hue, hv) if hue else None
            if categorical:
                ci_points(ax, rows, x, positions, color=color, label=label, offset=off, clip=clip)
            else:
                ci_line(ax, rows, x, color=color, label=label, clip=clip, markersize=4)
            if seeds:
                raw = raw_here if hv is None else raw_here[raw_here[hue] == hv]
                xs = raw[x].map(positions).to_numpy(float) + off if categorical else raw[x]
                ax.scatter(xs, raw[y], s=10, color=color, alpha=0.45, lw=0, zorder=3)
            drawn.append(rows)
        if hline is not None:
            ax.axhline(hline, color="gray", ls="--", lw=1)
        if categorical:
            ax.set_xticks(range(len(levels)), [name(x, v) for v in levels])
            ax.set_xlim(-0.5, len(levels) - 0.5)
        elif logx:
            ax.set_xscale("log", base=10 if logx is True else logx)
            ticks = sorted(data[x].unique())
            # whole numbers as they are (batch sizes), others to 2 significant digits (rates),
            # slanted when many (a learning-rate sweep's labels would run into each other)
            tick_text = [f"{t:g}" if float(t).is_integer() else f"{t:.2g}" for t in ticks]
            slant = len(ticks) > 6 and any(not float(t).is_integer() for t in ticks)
            ax.set_xticks(ticks, tick_text, **({"rotation": 40, "ha": "right"} if slant else {}))
            ax.minorticks_off()
        if log:
            ax.set_yscale("log")
    finish(
        fig,
        axes,
        title=_title(title, log, int(summary["n"].max())),
        titles=[name(panel, pv) for pv in panel_values] if panel else None,
        xlabel=xlabel if xlabel is not None else _words(x) + (" (log scale)" if logx else ""),
        ylabel=ylabel if ylabel is not None else _words(y),
        legend=legend if hue or reference is not None else None,
        legend_title=legend_title,
    )
    return attach_data(fig, pd.concat(drawn, ignore_index=True)) if drawn else fig


def over_steps(
    records: pd.DataFrame,
    panels: dict,
    *,
    x: str = "step",
    hue: str = "norm",
    key=None,
    logy: bool = True,
    title: str = "",
    agg="mean",
    palette: dict | None = None,
    labels: dict | None = None,
    ncols: int | None = None,
    legend_title: str | None = None,
    clip: tuple = (None, None),
) -> Figure:
    """Recorded metrics over training: one titled panel per metric (at most three per row), one
    line per `hue` value in the norm colours, mean and 95 % t-CI over seeds as a light band.

    Args:
        records: tidy records (`normtheory.results.load`).
        panels: metric -> y label, or metric -> (panel title, y label).
        x: the x column (``"step"``).
        hue: the column drawn as separate lines.
        key: keep only this record key (or these keys); None keeps all.
        logy: geometric means, log-space intervals and a log y axis.
        title: the figure's title; the interval is stated on a second line.
        agg: how the rows of one seed at one x are combined first (several layers or keys):
            ``"mean"``, ``"max"`` or a function.
        palette, labels: hue value -> colour / legend name (defaults as in `by_condition`).
        ncols: panels per row (default as in `normtheory.plots.layout.panels`).
        legend_title: the legend's title (default: ``"normalization"`` for norms).
        clip: the valid range of the quantity, for the bands.
    """
    fig, axes = layout.panels(len(panels), ncols=ncols)
    need = require_columns(
        records, [x, hue, "cell", "seed", "step", "metric", "key", "value"], "records"
    )
    hues = hue_order(records[hue].dropna(), hue) if not need else []
    colors = palette or hue_palette(hues, hue)
    drawn, titles, n = [], [], 0
    for ax, (name, spec) in zip(axes, panels.items()):
        panel_title, ylabel = spec if isinstance(spec, tuple) else (spec, spec)
        titles.append(panel_title)
        rows = metric(records, name, key) if not need else records.iloc[:0]
        if rows.empty:
            missing_panel(ax, need or name)
            continue
        for hv in hues:
            sub = rows[rows[hue] == hv]
            if len(sub):
                summary = summarize_ci(per_seed(sub, [x], "value", agg), [x], "value", log=logy)
                label = (labels or {}).get(hv, value_label(hue, hv))
                ci_line(ax, summary, x, color=colors[hv], label=label, markersize=3, clip=clip)
                drawn.append(summary.assign(metric=name, ylabel=ylabel, **{hue: hv}))
                n = max(n, int(summary["n"].max()))
        if logy:
            ax.set_yscale("log")
        ax.set(xlabel=_words(x), ylabel=f"{ylabel} (log)" if logy else ylabel)
    finish(
        fig,
        axes,
        title=_title(title, logy, n),
        titles=titles,
        legend="spare",
        legend_title=legend_title or ("normalization" if hue == "norm" else _words(hue)),
    )
    return attach_data(fig, pd.concat(drawn, ignore_index=True)) if drawn else fig


def paired_change(
    frame: pd.DataFrame,
    y: str,
    column: str,
    baseline,
    *,
    x: str | None = None,
    title: str = "",
    ylabel: str | None = None,
    **kw,
) -> Figure:
    """Per seed, `y` at each level of `column` minus `y` at `baseline` (same seed), with each
    seed's change as a dot, the mean and 95 % t-CI over seeds, and a dashed line at 0.

    Args:
        frame: one row per seed and level of `column` (and `x`), e.g. `final_outcomes`.
        y: the quantity compared (e.g. ``"test_acc"``).
        column: the condition column (e.g. ``"tag"`` or ``"norm"``); `baseline` one of its levels.
        x: a further condition within which pairs are formed and which is drawn on the x axis
            (e.g. ``"batch_size"``); None draws the levels of `column` on the x axis.
        title, ylabel: as in `by_condition` (default y label: ``"<y> − <baseline> (same seed)"``).
        **kw: passed to `by_condition` (e.g. ``categorical``, ``logx``, ``palette``, ``labels``).
    """
    missing = require_columns(frame, ["seed", y, column, *([x] if x else [])], y)
    if missing:
        return missing_figure(title or f"change of {y}", missing)
    diffs = changes(frame, y, column, baseline, by=[x] if x else [])
    if diffs.empty:
        return missing_figure(title or f"change of {y}", [f"pairs with {column} = {baseline}"])
    base = (kw.get("labels") or {}).get(baseline, value_label(column, baseline))
    return by_condition(
        diffs,
        "change",
        x or column,
        hue=column,
        title=title,
        ylabel=ylabel or f"{_words(y)} − {base} (same seed)",
        hline=0.0,
        seeds=True,
        **kw,
    )
