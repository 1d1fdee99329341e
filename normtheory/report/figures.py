"""Shared figure helpers: one colour per norm across every figure, a 'missing data' panel.

Figure functions are pure: ``(Results) -> Figure``; they never mutate the frames they read.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

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
_PALETTE = dict(zip(NORM_ORDER, sns.color_palette("tab10", 10) + [(0.3, 0.3, 0.3)]))


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
