"""The declarative figures: pure functions of a frame (never mutated) that draw the mean and
95 % t-CI over seeds in the house layout, attach what they draw, and say what is missing."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import FillBetweenPolyCollection, PathCollection

from normtheory.plots import attached_data, by_condition, over_steps, paired_change
from normtheory.plots.summary import BAND_ALPHA
from normtheory.stats import mean_ci

NORMS = ["batch", "group", "group+ws", "frn", "none"]


def _cells(seeds: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {"norm": n, "batch_size": b, "seed": s, "test_error": 0.1 * i + 0.01 * b + 0.01 * rng.random()}
        for i, n in enumerate(NORMS)
        for b in (2, 8, 32)
        for s in range(seeds)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _records() -> pd.DataFrame:
    rows = [
        {"run": "r", "cell": n, "seed": s, "step": t, "metric": m, "key": k, "norm": n,
         "value": (1.0 + i) * (1 + s) / (1 + t) * (2.0 if k == "b" else 1.0)}
        for i, n in enumerate(["batch", "none"])
        for s in range(3)
        for t in (0, 10, 20)
        for m in ("smoothness.beta", "smoothness.loss_range")
        for k in ("a", "b")
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _texts(fig) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)


def _legend_texts(fig) -> list[str]:
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    return [t.get_text() for lg in legends for t in lg.get_texts()]


def test_one_panel_per_norm_titled_in_words_three_to_a_row():
    cells = _cells()
    before = cells.copy()
    fig = by_condition(cells, "test_error", "batch_size", panel="norm", logx=2, reference="batch")
    pd.testing.assert_frame_equal(cells, before)
    shown = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in shown] == ["BN", "GN", "GN + WS", "FRN + TLU", "no norm"]
    assert fig.axes[0].get_gridspec().get_geometry() == (2, 3)
    assert _legend_texts(fig) == ["BN (reference)"]  # one legend, in the spare cell
    assert "95% t-CI over 5 seeds" in fig._suptitle.get_text()
    plt.close(fig)


def test_numeric_x_is_a_line_with_a_light_band_and_the_t_interval():
    cells = _cells()
    fig = by_condition(cells, "test_error", "batch_size", hue="norm")
    ax = fig.axes[0]
    bands = [c for c in ax.collections if isinstance(c, FillBetweenPolyCollection)]
    assert len(bands) == len(NORMS) and all(b.get_alpha() <= 0.2 for b in bands)
    assert BAND_ALPHA <= 0.2
    data = attached_data(fig)
    row = data[(data["norm"] == "group") & (data["batch_size"] == 8)].iloc[0]
    est = mean_ci(cells[(cells["norm"] == "group") & (cells["batch_size"] == 8)]["test_error"])
    assert (row["mean"], row["low"], row["high"], row["n"]) == pytest.approx(
        (est.value, est.low, est.high, 5)
    )
    assert _legend_texts(fig) == ["BN", "GN", "GN + WS", "FRN + TLU", "no norm"]
    plt.close(fig)


def test_categorical_x_is_points_with_error_bars_not_a_connected_line():
    cells = _cells().assign(size=lambda f: f["batch_size"].map({2: "tiny", 8: "small", 32: "big"}))
    fig = by_condition(cells, "test_error", "size", hue="norm", order=["tiny", "small", "big"])
    ax = fig.axes[0]
    assert len(ax.containers) == len(NORMS)  # one errorbar container per norm
    assert all(line.get_linestyle() == "None" for line in ax.get_lines())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["tiny", "small", "big"]
    plt.close(fig)


def test_rows_of_one_seed_are_one_sample():
    """Two rows of a seed at one condition (e.g. two layers) are averaged before the interval:
    n is the number of seeds, not of rows."""
    cells = pd.concat([_cells(3), _cells(3).assign(test_error=lambda f: f["test_error"] + 1)])
    fig = by_condition(cells, "test_error", "batch_size", hue="norm")
    assert set(attached_data(fig)["n"]) == {3}
    plt.close(fig)


def test_a_missing_column_draws_a_missing_figure():
    fig = by_condition(_cells().drop(columns="test_error"), "test_error", "batch_size")
    assert "missing: test_error" in _texts(fig)
    plt.close(fig)
    fig = by_condition(_cells().iloc[:0], "test_error", "batch_size", title="error")
    assert "missing: rows of test_error" in _texts(fig)
    plt.close(fig)


def test_over_steps_titles_panels_and_marks_a_missing_metric():
    records = _records()
    before = records.copy()
    panels = {
        "smoothness.beta": ("Effective β-smoothness", "β"),
        "smoothness.loss_range": "loss range",
        "hessian.eig": ("Top Hessian eigenvalue", "λ_max"),
    }
    fig = over_steps(records, panels, key="a", title="Landscape")
    pd.testing.assert_frame_equal(records, before)
    assert [ax.get_title() for ax in fig.axes] == [
        "Effective β-smoothness",
        "loss range",
        "Top Hessian eigenvalue",
    ]
    assert "missing: hessian.eig" in _texts(fig)
    assert len(fig.legends) == 1 and fig.legends[0].get_title().get_text() == "normalization"
    assert _legend_texts(fig) == ["BN", "no norm"]
    data = attached_data(fig)
    first = data[(data["metric"] == "smoothness.beta") & (data["norm"] == "batch")]
    # geometric mean over seeds 1, 2, 3 (× 1/(1+t)) of key "a" only
    assert first.sort_values("step")["mean"].iloc[0] == pytest.approx(6 ** (1 / 3))
    plt.close(fig)
    fig = over_steps(records.drop(columns="norm"), {"smoothness.beta": "β"})
    assert "missing: norm" in _texts(fig)
    plt.close(fig)


def test_paired_change_draws_each_seeds_change_and_its_mean():
    cells = _cells()
    fig = paired_change(cells, "test_error", "norm", "batch", x="batch_size", categorical=True)
    data = attached_data(fig)
    assert set(data["norm"]) == set(NORMS) - {"batch"}
    wide = cells.pivot(index=["batch_size", "seed"], columns="norm", values="test_error")
    want = (wide["group"] - wide["batch"]).xs(8, level="batch_size").mean()
    got = data[(data["norm"] == "group") & (data["batch_size"] == 8)]["mean"].iloc[0]
    assert got == pytest.approx(want)
    ax = fig.axes[0]
    dots = sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))
    assert dots == 4 * 3 * 5  # every seed's change, 4 norms × 3 batch sizes × 5 seeds
    assert any(np.allclose(line.get_ydata(), 0) for line in ax.get_lines())  # the zero line
    assert ax.get_ylabel() == "test error − BN (same seed)"
    plt.close(fig)
