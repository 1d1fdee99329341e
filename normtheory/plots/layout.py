"""Figure layout for every study: a grid of at most three panels per row, one legend, titles and
labels in words, and a visible "missing: X" where data is absent (never an empty plot).

Studies declare what to draw in each panel; `panels` makes the grid and `finish` applies the
house layout, so that every figure of the report reads the same way.
"""

import math

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.layout_engine import TightLayoutEngine

from normtheory.checks import check_int

MAX_COLUMNS = 3  # a paper column holds three panels legibly, not five
PANEL_SIZE = (4.2, 3.4)  # inches per panel
LEGENDS = ("outside", "spare", "first", "each", None)
MISSING_COLOR = "crimson"


def require_columns(frame: pd.DataFrame, columns, what: str) -> list[str]:
    """The columns of `columns` missing from `frame`, or ``["rows of <what>"]`` when it has
    none: what a 'missing' panel should name (empty when everything is there)."""
    return [c for c in columns if c not in frame.columns] or (
        [] if len(frame) else [f"rows of {what}"]
    )


def missing_panel(ax: Axes, missing) -> None:
    """Turns `ax` into a visible 'missing: …' notice (its title, if any, is kept)."""
    what = missing if isinstance(missing, str) else ", ".join(map(str, missing))
    ax.text(
        0.5,
        0.5,
        f"missing: {what}",
        ha="center",
        va="center",
        color=MISSING_COLOR,
        fontsize=12,
        wrap=True,
        transform=ax.transAxes,
    )
    ax.set_axis_off()


def missing_figure(title: str, missing) -> Figure:
    """A figure that says loudly what is missing instead of an empty plot."""
    fig, ax = plt.subplots(figsize=(6, 3))
    missing_panel(ax, missing)
    ax.set_title(title)
    return fig


def panels(
    n: int,
    *,
    ncols: int | None = None,
    sharex: bool = False,
    sharey: bool = False,
    title: str = "",
    size: tuple[float, float] = PANEL_SIZE,
) -> tuple[Figure, list[Axes]]:
    """A figure with `n` panels, at most three per row; the unused cells of the grid are hidden.

    Args:
        n: the number of panels.
        ncols: panels per row (1–3); by default `n` up to 3, and 2 for four panels (2 × 2).
        sharex, sharey: share the axes of all panels.
        title: the figure's title.
        size: (width, height) of one panel in inches.

    Returns:
        (figure, the `n` panels in reading order).
    """
    check_int("panels: n", n)
    ncols = (2 if n == 4 else min(n, MAX_COLUMNS)) if ncols is None else ncols
    check_int("panels: ncols", ncols, 1, MAX_COLUMNS)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, grid = plt.subplots(
        nrows,
        ncols,
        figsize=(size[0] * ncols, size[1] * nrows),
        sharex=sharex,
        sharey=sharey,
        squeeze=False,
    )
    flat = list(grid.flat)
    for ax in flat[n:]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig, flat[:n]


def _bottom_of_column(ax: Axes, used: list[Axes]) -> bool:
    """True when no used panel lies below `ax` in its grid column."""
    spec = ax.get_subplotspec()
    if spec is None:
        return True
    col, row = spec.colspan.start, spec.rowspan.stop
    for other in used:
        s = other.get_subplotspec()
        if s is not None and s.colspan.start == col and s.rowspan.start >= row:
            return False
    return True


def _first_of_row(ax: Axes) -> bool:
    spec = ax.get_subplotspec()
    return spec is None or spec.colspan.start == 0


def _shared(ax: Axes, which: str) -> bool:
    group = ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()
    return len(group.get_siblings(ax)) > 1


def legend_entries(axes) -> dict:
    """label -> handle over `axes`, first handle of each label (labels starting "_" skipped)."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    return entries


def finish(
    fig: Figure,
    axes,
    *,
    title: str | None = None,
    titles=None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    legend: str | None = "outside",
    legend_title: str | None = None,
    legend_kw: dict | None = None,
    grid: bool = True,
) -> Figure:
    """Applies the house layout to `fig` and returns it.

    Args:
        fig, axes: from `panels` (the used panels, in reading order).
        title: the figure's title (suptitle); None keeps the current one.
        titles: one title per panel (words, not raw ids), or None to keep them.
        xlabel, ylabel: axis labels; with shared axes only the outer panels get them, and the
            lowest panel of each column gets its x tick labels back.
        legend: where the one legend (labels de-duplicated over all panels) goes: ``"outside"``
            (right of the panels), ``"spare"`` (in the first hidden cell of the grid, else
            outside), ``"first"`` (inside the first panel), ``"each"`` (every panel its own),
            None (no legend). Legends drawn before are replaced.
        legend_title: the legend's title.
        legend_kw: more keyword arguments of `matplotlib.axes.Axes.legend`.
        grid: a light grid on every drawn panel.
    """
    if legend not in LEGENDS:
        raise ValueError(f"finish: legend must be one of {LEGENDS}, got {legend!r}")
    axes = list(axes)
    if titles is not None:
        titles = list(titles)
        if len(titles) != len(axes):
            raise ValueError(f"finish: {len(titles)} titles for {len(axes)} panels")
        for ax, text in zip(axes, titles):
            ax.set_title(text)
    drawn = [ax for ax in axes if ax.axison]  # a 'missing' panel has its axis off
    for ax in drawn:
        bottom = _bottom_of_column(ax, drawn)
        if xlabel is not None and (bottom or not _shared(ax, "x")):
            ax.set_xlabel(xlabel)
        if bottom and _shared(ax, "x"):
            ax.xaxis.set_tick_params(labelbottom=True)
        if ylabel is not None and (_first_of_row(ax) or not _shared(ax, "y")):
            ax.set_ylabel(ylabel)
        if grid:
            ax.grid(alpha=0.3)
    for ax in fig.axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    kw = {"title": legend_title, **(legend_kw or {})}
    entries = legend_entries(axes)
    spare = [ax for ax in fig.axes if ax not in axes and not ax.axison]
    if legend == "each":
        for ax in drawn:
            if ax.get_legend_handles_labels()[0]:
                ax.legend(**kw)
    elif entries and legend == "first":
        axes[0].legend(entries.values(), entries.keys(), **kw)
    elif entries and legend == "spare" and spare:
        spare[0].legend(entries.values(), entries.keys(), loc="center", **kw)
    elif entries and legend in ("outside", "spare"):
        fig.legend(
            entries.values(), entries.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), **kw
        )
    if title is not None:
        fig.suptitle(title)
    # The tight layout once, now, leaving the figure without a layout engine (fig.tight_layout()
    # leaves a placeholder, and any engine makes every savefig draw the whole figure twice).
    TightLayoutEngine().execute(fig)
    return fig
