"""`normtheory.plots.summary`: one sample per seed, and the mean with the Student-t interval over
seeds, ȳ ± t_{0.975, n−1} · s/√n, against scipy's t quantile and numpy by hand (and, with
``log=True``, the same on log y mapped back: the geometric mean and a multiplicative interval)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from normtheory.plots.summary import per_seed, summarize_ci


def _t_interval(values, level=0.95):
    values = np.asarray(values, dtype=float)
    n = len(values)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return values.mean(), values.mean() - half, values.mean() + half


def test_per_seed_aggregates_the_rows_of_a_seed():
    frame = pd.DataFrame({
        "norm": ["batch"] * 4 + ["group"] * 2, "seed": [0, 0, 1, 1, 0, 0],
        "y": [1.0, 3.0, 5.0, 5.0, 2.0, 4.0],
    })  # fmt: skip
    got = per_seed(frame, ["norm"], "y")
    assert got.to_dict("list") == {
        "norm": ["batch", "batch", "group"], "seed": [0, 1, 0], "y": [2.0, 5.0, 3.0],
    }  # fmt: skip
    assert per_seed(frame, ["norm"], "y", agg="max")["y"].tolist() == [3.0, 5.0, 4.0]


def test_summarize_ci_is_the_student_t_interval_per_group():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "norm": np.repeat(["batch", "group"], [5, 8]), "bs": np.tile([2, 8], 7)[:13],
        "y": rng.normal(1.0, 0.3, 13),
    })  # fmt: skip
    got = summarize_ci(frame, ["norm", "bs"], "y")
    assert list(got.columns) == ["norm", "bs", "mean", "low", "high", "n"]
    assert len(got) == 4
    for row in got.itertuples():
        values = frame[(frame.norm == row.norm) & (frame.bs == row.bs)]["y"]
        mean, low, high = _t_interval(values)
        assert (row.mean, row.low, row.high) == pytest.approx((mean, low, high), rel=1e-12)
        assert row.n == len(values)
    wide = summarize_ci(frame, ["norm"], "y", level=0.99)
    narrow = summarize_ci(frame, ["norm"], "y", level=0.5)
    assert ((wide.high - wide.low) > (narrow.high - narrow.low)).all()


def test_log_summary_is_the_geometric_mean_with_a_multiplicative_interval():
    frame = pd.DataFrame({"g": "a", "y": [1.0, 2.0, 4.0, 8.0, 0.0, -1.0]})
    (row,) = summarize_ci(frame, ["g"], "y", log=True).itertuples()
    mean, low, high = _t_interval(np.log([1.0, 2.0, 4.0, 8.0]))  # non-positive values dropped
    assert (row.mean, row.low, row.high) == pytest.approx(np.exp([mean, low, high]), rel=1e-12)
    assert row.mean == pytest.approx(math.sqrt(8)) and row.n == 4
    assert row.mean / row.low == pytest.approx(row.high / row.mean, rel=1e-12)


def test_one_seed_or_no_spread_gives_no_interval():
    frame = pd.DataFrame({"g": ["a", "b", "b"], "y": [1.0, 2.0, 2.0]})
    got = summarize_ci(frame, ["g"], "y").set_index("g")
    assert got.loc["a", "mean"] == 1.0 and math.isnan(got.loc["a", "low"])
    assert got.loc["b", "mean"] == 2.0 and math.isnan(got.loc["b", "high"])  # never [x, x]
    assert summarize_ci(frame.iloc[:0], ["g"], "y").empty


def test_ci_line_draws_a_band_for_a_series_and_an_error_bar_for_a_lone_point():
    """A one-point series has no band (fill_between over one x is empty): its CI must still show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    from normtheory.plots.summary import ci_line

    fig, ax = plt.subplots()
    series = pd.DataFrame(
        {"b": [2, 32], "mean": [0.1, 0.2], "low": [0.05, 0.1], "high": [0.15, 0.3]}
    )
    ci_line(ax, series, "b", color="C0")
    assert not ax.containers  # a band, no error bars
    lone = pd.DataFrame({"b": [32], "mean": [0.4], "low": [0.3], "high": [0.6]})
    ci_line(ax, lone, "b", color="C1")
    (bars,) = ax.containers
    segments = [c for c in bars.lines[2] if isinstance(c, LineCollection)][0].get_segments()
    assert np.allclose(segments[0], [[32, 0.3], [32, 0.6]])
    plt.close(fig)
