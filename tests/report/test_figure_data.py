"""The data behind a figure: an attached table wins; otherwise lines, their CI bands, points and
bars are read back from the artists with their panel, axis labels and series."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from normtheory.plots import attach_data
from normtheory.report.data import figure_data


def test_attached_table_is_returned_as_is():
    fig, _ = plt.subplots()
    table = pd.DataFrame({"a": [1, 2]})
    assert figure_data(attach_data(fig, table)) is table
    plt.close(fig)


def test_lines_bands_points_and_bars_are_read_back():
    fig, (ax1, ax2) = plt.subplots(1, 2)
    x = np.array([1.0, 2.0, 4.0])
    ax1.plot(x, [1.0, 2.0, 3.0], color="tab:blue", label="batch")
    ax1.fill_between(x, [0.5, 1.5, 2.5], [1.5, 2.5, 3.5], color="tab:blue", alpha=0.2)
    ax1.axhline(1.0, color="gray", ls="--")
    ax1.scatter([3.0], [7.0], label="outlier")
    ax1.set(title="left", xlabel="batch size", ylabel="error")
    ax2.bar(["a", "b"], [5.0, 6.0], label="counts")
    data = figure_data(fig)
    plt.close(fig)
    line = data[(data["series"] == "batch")]
    assert list(line["x"]) == [1, 2, 4] and list(line["y"]) == [1, 2, 3]
    assert list(line["low"]) == [0.5, 1.5, 2.5] and list(line["high"]) == [1.5, 2.5, 3.5]
    assert set(line["panel"]) == {"left"} and set(line["xlabel"]) == {"batch size"}
    assert (data["kind"] == "reference").sum() == 2  # axhline: axes-coordinate x
    assert data[data["series"] == "outlier"][["x", "y"]].values.tolist() == [[3.0, 7.0]]
    bars = data[data["kind"] == "bar"]
    assert list(bars["y"]) == [5.0, 6.0] and set(bars["panel"]) == {"panel 2"}
