"""The tidy table behind a figure, so anyone can replot it (``reports/results/<figure>.csv``).

A figure function may attach its own table with `normtheory.plots.attach_data` (the shared
helpers in `normtheory.plots` do); otherwise `figure_data` reads what was drawn back from the
matplotlib artists: every labelled or unlabelled line, its CI band (a `fill_between` of the same
colour over the same x), scatter points and bars, one row per point with the panel, axis labels
and series it belongs to.
"""

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import FillBetweenPolyCollection, PathCollection, PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from normtheory.plots.data import attached_data

COLUMNS = ["panel", "xlabel", "ylabel", "series", "kind", "x", "y", "low", "high"]


def figure_data(fig: Figure) -> pd.DataFrame:
    """The attached table of `fig`, or the data of its artists (columns `COLUMNS`)."""
    attached = attached_data(fig)
    if attached is not None:
        return attached
    frames = [_axes_data(ax, i) for i, ax in enumerate(fig.axes)]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def _label(artist, fallback: str) -> str:
    label = str(artist.get_label() or "")
    return fallback if not label or label.startswith("_") else label


def _values(values) -> np.ndarray:
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):  # categorical axes: matplotlib keeps the strings
        return np.asarray(values, dtype=object)


def _band(coll: PolyCollection) -> pd.DataFrame:
    """x, low, high of a fill_between band: per x, the min and max of its polygon."""
    verts = np.concatenate([p.vertices for p in coll.get_paths()]) if coll.get_paths() else []
    if not len(verts):
        return pd.DataFrame(columns=["x", "low", "high"])
    frame = pd.DataFrame(verts, columns=["x", "y"])
    return frame.groupby("x")["y"].agg(low="min", high="max").reset_index()


def _axes_data(ax: Axes, index: int) -> pd.DataFrame:
    panel = ax.get_title() or ax.get_title("left") or f"panel {index + 1}"
    base = {"panel": panel, "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel()}
    rows: list[pd.DataFrame] = []
    bands = [
        (to_rgb(c.get_facecolor()[0]), _band(c))
        for c in ax.collections
        if isinstance(c, FillBetweenPolyCollection) and len(c.get_facecolor())
    ]
    for i, line in enumerate(ax.get_lines()):
        x, y = _values(line.get_xdata()), _values(line.get_ydata())
        if not len(x):
            continue
        on_data = line.get_transform() == ax.transData
        frame = pd.DataFrame({"x": x, "y": y, "low": np.nan, "high": np.nan})
        color = to_rgb(line.get_color())
        for j, (band_color, band) in enumerate(bands):
            if band is not None and np.allclose(band_color, color) and set(band.x) == set(x):
                frame = frame.drop(columns=["low", "high"]).merge(band, on="x", how="left")
                bands[j] = (band_color, None)  # each band belongs to one line
                break
        rows.append(
            frame.assign(
                **base,
                series=_label(line, f"line {i + 1}"),
                kind="line" if on_data else "reference",
            )
        )
    for _color, band in bands:  # bands with no line of their colour
        if band is not None and len(band):
            rows.append(band.assign(**base, series="band", kind="band", y=np.nan))
    for i, coll in enumerate(ax.collections):
        if isinstance(coll, PathCollection) and len(coll.get_offsets()):
            xy = np.asarray(coll.get_offsets(), dtype=float)
            series = _label(coll, f"points {i + 1}")
            rows.append(
                pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]}).assign(
                    **base, series=series, kind="points", low=np.nan, high=np.nan
                )
            )
    for i, container in enumerate(ax.containers):
        if isinstance(container, BarContainer):
            horizontal = getattr(container, "orientation", "vertical") == "horizontal"
            pos = [
                (r.get_y() + r.get_height() / 2, r.get_width())
                if horizontal
                else (r.get_x() + r.get_width() / 2, r.get_height())
                for r in container.patches
            ]
            frame = pd.DataFrame(pos, columns=["x", "y"]).assign(low=np.nan, high=np.nan)
            rows.append(frame.assign(**base, series=_label(container, f"bars {i + 1}"), kind="bar"))
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(rows, ignore_index=True).reindex(columns=COLUMNS)
