"""`normtheory.plots.curves`: each curve is the mean over seeds (one sample per seed) with the
Student-t band ȳ ± t_{0.975, n−1} s/√n (geometric with ``log``), checked against scipy and numpy
by hand; series follow the given order and styles; the figure never mutates its frame."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import FillBetweenPolyCollection
from scipy import stats

from normtheory.plots import panel_curves, seed_curve, seed_curves
from normtheory.plots.summary import BAND_ALPHA


def _frame() -> pd.DataFrame:
    """3 seeds × 3 x values × 2 tags × 2 groups, two rows per seed at each point (two layers)."""
    rng = np.random.default_rng(0)
    rows = []
    for group in ("g1", "g2"):
        for tag, level in (("A", 1.0), ("B", 3.0)):
            for seed in range(3):
                for x in (1, 2, 4):
                    for layer in range(2):
                        value = level * x * math.exp(rng.normal(0, 0.2)) + layer
                        rows.append(dict(group=group, tag=tag, seed=seed, x=x, y=value))
    return pd.DataFrame(rows)


def _band(ax) -> tuple[np.ndarray, np.ndarray]:
    """Per x, the lower and upper edge of the (only) band of `ax`."""
    band = next(c for c in ax.collections if isinstance(c, FillBetweenPolyCollection))
    verts = band.get_paths()[0].vertices
    xs = np.unique(verts[:, 0])
    low = np.array([verts[verts[:, 0] == x, 1].min() for x in xs])
    high = np.array([verts[verts[:, 0] == x, 1].max() for x in xs])
    return low, high


@pytest.mark.parametrize("log", [False, True])
def test_seed_curve_is_the_mean_and_t_interval_over_seeds(log):
    frame = _frame()
    rows = frame[(frame["group"] == "g1") & (frame["tag"] == "A")]
    fig, ax = plt.subplots()
    summary = seed_curve(ax, rows, "x", "y", log=log, color="red", label="A", ls="--")
    line = ax.lines[0]
    for i, x in enumerate((1, 2, 4)):
        per_seed = rows[rows["x"] == x].groupby("seed")["y"].mean().to_numpy()  # 1 per seed
        values = np.log(per_seed) if log else per_seed
        half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / math.sqrt(3)
        want = np.array([values.mean(), values.mean() - half, values.mean() + half])
        want = np.exp(want) if log else want
        assert line.get_ydata()[i] == pytest.approx(want[0], rel=1e-12)
        assert _band(ax)[0][i] == pytest.approx(want[1], rel=1e-9)
        assert _band(ax)[1][i] == pytest.approx(want[2], rel=1e-9)
        assert summary["n"].iloc[i] == 3
    assert (line.get_label(), line.get_color(), line.get_linestyle()) == ("A", "red", "--")
    assert ax.collections[0].get_alpha() == BAND_ALPHA
    plt.close(fig)


def test_seed_curve_combines_the_rows_of_a_seed_by_agg_and_can_skip_the_band():
    frame = _frame()
    rows = frame[(frame["group"] == "g1") & (frame["tag"] == "B")]
    fig, ax = plt.subplots()
    seed_curve(ax, rows, "x", "y", agg="max", band=False, color="k")
    want = rows.groupby(["x", "seed"])["y"].max().groupby("x").mean().to_numpy()
    np.testing.assert_allclose(ax.lines[0].get_ydata(), want, rtol=1e-12)
    assert not ax.collections
    plt.close(fig)


def test_seed_curves_follow_the_styles_order_and_skip_absent_series():
    frame = _frame()
    styles = {
        "B": {"color": "blue"},
        "missing": {"color": "gray"},
        "A": {"color": "red", "label": "a"},
    }
    fig, ax = plt.subplots()
    seed_curves(ax, frame[frame["group"] == "g1"], "x", "y", "tag", styles)
    assert [line.get_label() for line in ax.lines] == ["B", "a"]
    assert [line.get_color() for line in ax.lines] == ["blue", "red"]
    plt.close(fig)


def test_panel_curves_draws_one_panel_per_group_and_leaves_the_frame_alone():
    frame = _frame()
    before = frame.copy()
    seen = []
    styles = {"A": {"color": "red"}, "B": {"color": "blue"}}
    fig = panel_curves(frame, "x", "y", panel="group", hue="tag", styles=styles, order=["g2", "g1"],
                       decorate=lambda ax, value, rows: seen.append((value, len(rows))),
                       title="T", xlabel="x")  # fmt: skip
    assert [ax.get_title() for ax in fig.axes] == ["g2", "g1"]
    assert seen == [("g2", len(frame) // 2), ("g1", len(frame) // 2)]
    assert all(len(ax.lines) == 2 for ax in fig.axes) and fig._suptitle.get_text() == "T"
    g2 = frame[(frame["group"] == "g2") & (frame["tag"] == "A")]
    want = g2.groupby(["x", "seed"])["y"].mean().groupby("x").mean().to_numpy()
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), want, rtol=1e-12)
    pd.testing.assert_frame_equal(frame, before)
    plt.close(fig)
