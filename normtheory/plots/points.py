"""Single runs as points, marked by whether each met a criterion (trained, stable): a dot where it
did, a cross where it did not, in the series' one colour, so that a failed run stays visible
instead of being dropped from the figure."""

import numpy as np


def outcome_points(
    ax, x, y, ok, *, color, label=None, failed_label=None, sizes=(25, 40), **kw
) -> None:
    """Draws the points (x, y) with ``ok`` as dots (size ``sizes[0]``) and the others as
    crosses (``sizes[1]``).

    Both groups are drawn (an empty group draws nothing visible); each gets its label only when
    it holds a point, so the legend lists what is there.

    Args:
        ax: the panel.
        x, y, ok: one value per point (array-likes of one length; `ok` read as bool).
        color: the colour of both groups.
        label, failed_label: legend labels of the dots and of the crosses.
        sizes: marker areas (points²) of dots and crosses.
        kw: more keyword arguments of `matplotlib.axes.Axes.scatter`.
    """
    ok = np.asarray(ok, dtype=bool)
    x, y = np.asarray(x), np.asarray(y)
    if not x.shape == y.shape == ok.shape:
        raise ValueError(f"outcome_points: x, y, ok of shapes {x.shape}, {y.shape}, {ok.shape}")
    for hit, marker, size, text in ((ok, "o", sizes[0], label), (~ok, "x", sizes[1], failed_label)):
        label_here = text if hit.any() else None
        ax.scatter(x[hit], y[hit], color=color, marker=marker, s=size, label=label_here, **kw)
