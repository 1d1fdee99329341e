"""The house layout: at most three panels per row, unused cells hidden, one de-duplicated
legend, titles and labels where a reader looks for them, 'missing' panels that say so."""

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from normtheory.plots import finish, missing_figure, missing_panel, panels, require_columns


def _texts(fig) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)


@pytest.mark.parametrize(("n", "shape"), [(1, (1, 1)), (3, (1, 3)), (4, (2, 2)), (5, (2, 3)),
                                          (7, (3, 3))])  # fmt: skip
def test_at_most_three_panels_per_row_and_extra_cells_hidden(n, shape):
    fig, axes = panels(n)
    assert len(axes) == n and len(fig.axes) == shape[0] * shape[1]
    assert fig.axes[0].get_gridspec().get_geometry() == shape
    assert all(ax.axison for ax in axes)
    assert not any(ax.axison for ax in fig.axes if ax not in axes)
    plt.close(fig)


def test_more_than_three_columns_is_refused():
    with pytest.raises(ValueError, match="ncols"):
        panels(6, ncols=4)
    with pytest.raises(ValueError, match="must be an integer >= 1, got 0"):
        panels(0)


def test_finish_draws_one_legend_without_duplicates_and_sets_titles():
    fig, axes = panels(3, title="ignored")
    for ax in axes:
        ax.plot([0, 1], [0, 1], color="C0", label="BN")
        ax.plot([0, 1], [1, 0], color="C1", label="GN")
        ax.legend()  # a legend drawn before is replaced by the one figure legend
    finish(fig, axes, title="Figure", titles=["a", "b", "c"], xlabel="step", ylabel="loss")
    assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in fig.axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["BN", "GN"]
    assert fig._suptitle.get_text() == "Figure"
    assert [ax.get_title() for ax in axes] == ["a", "b", "c"]
    assert {ax.get_xlabel() for ax in axes} == {"step"} and axes[0].get_ylabel() == "loss"
    plt.close(fig)


def test_legend_placements():
    fig, axes = panels(5)
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="BN")
    finish(fig, axes, legend="spare")
    spare = [ax for ax in fig.axes if ax not in axes]
    assert spare[0].get_legend() is not None and not fig.legends
    plt.close(fig)
    fig, axes = panels(2)
    axes[1].plot([0, 1], [0, 1], label="GN")
    finish(fig, axes, legend="first")
    assert axes[0].get_legend() is not None and axes[1].get_legend() is None
    plt.close(fig)
    with pytest.raises(ValueError, match="legend"):
        finish(*panels(1), legend="somewhere")


def test_shared_x_labels_the_lowest_panel_of_each_column():
    """With 5 panels on a 2 × 3 grid, the third panel is the lowest of its column (the cell
    below it is hidden): it needs the x label and its tick labels back."""
    fig, axes = panels(5, sharex=True, sharey=True)
    for ax in axes:
        ax.plot([1, 2], [1, 2])
    finish(fig, axes, xlabel="batch size", ylabel="error")
    assert [bool(ax.get_xlabel()) for ax in axes] == [False, False, True, True, True]
    assert [bool(ax.get_ylabel()) for ax in axes] == [True, False, False, True, False]
    assert axes[2].xaxis.get_tick_params()["labelbottom"]
    plt.close(fig)


def test_missing_panel_and_figure_say_what_is_missing():
    fig, axes = panels(2)
    axes[0].set_title("Top Hessian eigenvalue")
    missing_panel(axes[0], "hessian.eig")
    finish(fig, axes)
    assert "missing: hessian.eig" in _texts(fig) and not axes[0].axison
    assert axes[0].get_title() == "Top Hessian eigenvalue"
    plt.close(fig)
    fig = missing_figure("accuracy", ["final_test_acc", "seed"])
    assert "missing: final_test_acc, seed" in _texts(fig)
    plt.close(fig)


def test_require_columns_names_absent_columns_or_rows():
    frame = pd.DataFrame({"a": [1]})
    assert require_columns(frame, ["a", "b"], "cells") == ["b"]
    assert require_columns(frame.iloc[:0], ["a"], "cells") == ["rows of cells"]
    assert require_columns(frame, ["a"], "cells") == []
