"""`plot_records`: a user's own records over steps, one panel per metric, one line per key; the
lines hold exactly the recorded values, from the tidy or the wide frame alike."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from normtheory.hooks import pivot_records
from normtheory.plots import plot_records


def _tidy() -> pd.DataFrame:
    rows = [(t, "hessian.eig", str(r), 10.0 / (1 + t) / r) for t in (0, 5, 10) for r in (1, 2)]
    rows += [(t, "orth.ratio", "conv1", 0.99**t) for t in range(0, 11, 2)]  # another schedule
    rows += [(t, "outcome.train_loss", "", 2.0 - 0.1 * t) for t in range(11)]
    return pd.DataFrame(rows, columns=["step", "metric", "key", "value"])


def _lines(ax) -> dict[str, tuple[list, list]]:
    """legend label -> (x, y) of the panel's data lines, drawn in the legend's order ("" for
    the one line of a panel without a legend)."""
    data = [
        tuple(list(map(float, v)) for v in line.get_data())
        for line in ax.get_lines()
        if len(line.get_xdata())
    ]
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()] if legend is not None else [""]
    assert len(labels) == len(data)
    return dict(zip(labels, data))


@pytest.mark.parametrize("wide", [False, True])
def test_lines_hold_the_recorded_values(wide):
    tidy = _tidy()
    frame = pivot_records(tidy) if wide else tidy
    before = frame.copy()
    fig = plot_records(frame, metrics=["hessian.eig", "orth.ratio", "outcome.train_loss"])
    pd.testing.assert_frame_equal(frame, before)  # pure
    axes = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in axes] == ["hessian.eig", "orth.ratio", "outcome.train_loss"]
    eig = _lines(axes[0])
    for r in ("1", "2"):  # one line per key, at the steps recorded
        x, y = eig[r]
        assert x == [0, 5, 10] and y == pytest.approx([10.0 / (1 + t) / int(r) for t in x])
    ((x, y),) = _lines(axes[1]).values()  # sparse metric: an unbroken line over its own steps
    assert x == list(range(0, 11, 2)) and y == pytest.approx([0.99**t for t in x])
    ((x, y),) = _lines(axes[2]).values()
    assert x == list(range(11)) and not any(math.isnan(v) for v in y)
    plt.close(fig)


def test_a_column_of_the_wide_view_and_a_missing_metric():
    fig = plot_records(_tidy(), metrics=["hessian.eig/2", "smoothness.beta"])
    drawn, missing = fig.axes
    ((x, y),) = _lines(drawn).values()
    assert x == [0, 5, 10] and y == pytest.approx([5.0, 5.0 / 6, 5.0 / 11])
    texts = [t.get_text() for t in missing.texts]
    assert not missing.axison and texts == ["missing: smoothness.beta"]
    plt.close(fig)


def test_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match="at least one metric"):
        plot_records(_tidy(), metrics=[])
    with pytest.raises(ValueError, match="tidy records"):
        plot_records(pd.DataFrame({"a": np.arange(3)}), metrics=["a"])
