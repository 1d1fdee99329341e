"""Curves of per-seed summaries: a quantity against a numeric x (steps, a keep probability), the
mean over seeds with its 95 % t-CI band (`normtheory.plots.summary`), one line per series in a
style of its own, and the figure of one such panel per group.

- `seed_curve`: one line (and band) from the rows of one series.
- `seed_curves`: one line per value of a hue column, in the order and styles given.
- `panel_curves`: a figure of one panel per value of a column, each with its `seed_curves`.
"""

import pandas as pd
from matplotlib.figure import Figure

from normtheory.plots.layout import finish, panels
from normtheory.plots.summary import BAND_ALPHA, per_seed, summarize_ci


def seed_curve(
    ax,
    frame: pd.DataFrame,
    x: str,
    y: str,
    *,
    log: bool = False,
    agg="mean",
    band: bool = True,
    clip: tuple = (None, None),
    **style,
) -> pd.DataFrame:
    """Draws `y` against `x` as the mean over seeds (`per_seed` with `agg`, then `summarize_ci`;
    geometric with `log`) and, with `band`, its 95 % t-CI as a light band cut to `clip`.

    Args:
        ax: the panel.
        frame: rows with ``seed``, `x` and `y` (several rows of a seed at one x: combined by `agg`).
        style: keyword arguments of the line (``color``, ``label``, ``marker``, ``ls``, ...).

    Returns:
        The summary drawn (columns `x`, ``mean``, ``low``, ``high``, ``n``).
    """
    summary = summarize_ci(per_seed(frame, [x], y, agg), [x], y, log=log)
    ax.plot(summary[x], summary["mean"], **style)
    if band:
        low, high = summary["low"].clip(lower=clip[0]), summary["high"].clip(upper=clip[1])
        ax.fill_between(
            summary[x], low, high, color=style.get("color"), alpha=BAND_ALPHA, linewidth=0
        )
    return summary


def seed_curves(ax, frame: pd.DataFrame, x: str, y: str, hue: str, styles: dict, **kw) -> None:
    """One `seed_curve` per value of `hue` present in `frame`, in the order of `styles` (hue
    value -> line style; the label defaults to the value), with `kw` passed to each."""
    for value, style in styles.items():
        rows = frame[frame[hue] == value]
        if len(rows):
            seed_curve(ax, rows, x, y, **{"label": value, **style}, **kw)


def panel_curves(
    frame: pd.DataFrame,
    x: str,
    y: str,
    *,
    panel: str,
    hue: str,
    styles: dict,
    order=None,
    log: bool = False,
    band: bool = True,
    decorate=None,
    **layout,
) -> Figure:
    """One panel per value of `panel`, each with one `seed_curve` per value of `hue`.

    Args:
        frame: rows with ``seed``, `x`, `y`, `panel` and `hue`.
        panel, order: the column split into panels, and its values in panel order (default:
            sorted).
        hue, styles: the column drawn as separate lines, and hue value -> line style.
        log: geometric means and log-space bands (the y axis is left to `decorate`).
        band: draw the CI bands.
        decorate: ``decorate(ax, value, rows)`` after the curves of panel `value` (reference
            lines, scales, ticks).
        layout: keyword arguments of `normtheory.plots.layout.finish` (title, xlabel, ...);
            ``titles`` defaults to the panel values.

    Returns:
        The finished figure (attach the data it draws with `normtheory.plots.data.attach_data`).
    """
    order = sorted(frame[panel].unique()) if order is None else list(order)
    fig, axes = panels(len(order))
    for ax, value in zip(axes, order):
        rows = frame[frame[panel] == value]
        seed_curves(ax, rows, x, y, hue, styles, log=log, band=band)
        if decorate is not None:
            decorate(ax, value, rows)
    return finish(fig, axes, **{"titles": [str(v) for v in order], **layout})
