"""Figures for studies: studies declare what to plot, these helpers own layout, titles, legend
placement, colours and the data attached for the report.

Every figure function is pure, ``(frame) -> Figure``: it never mutates its input and draws a
visible "missing: X" when data is absent. Nothing here picks a matplotlib backend: the CLI and
the report choose one (Agg) before drawing.
"""

from normtheory.plots.curves import panel_curves, seed_curve, seed_curves
from normtheory.plots.data import attach_data, attached_data
from normtheory.plots.figures import by_condition, over_steps, paired_change
from normtheory.plots.layout import (
    finish,
    legend_entries,
    missing_figure,
    missing_panel,
    panels,
    require_columns,
)
from normtheory.plots.points import outcome_points
from normtheory.plots.records import plot_records
from normtheory.plots.style import (
    NORM_ORDER,
    hue_order,
    hue_palette,
    norm_label,
    norm_order,
    norm_palette,
    value_label,
)
from normtheory.plots.summary import BAND_ALPHA, ci_line, ci_points, per_seed, summarize_ci

__all__ = [
    "BAND_ALPHA",
    "NORM_ORDER",
    "attach_data",
    "attached_data",
    "by_condition",
    "ci_line",
    "ci_points",
    "finish",
    "hue_order",
    "hue_palette",
    "legend_entries",
    "missing_figure",
    "missing_panel",
    "norm_label",
    "norm_order",
    "norm_palette",
    "outcome_points",
    "over_steps",
    "paired_change",
    "panel_curves",
    "panels",
    "per_seed",
    "plot_records",
    "require_columns",
    "seed_curve",
    "seed_curves",
    "summarize_ci",
    "value_label",
]
