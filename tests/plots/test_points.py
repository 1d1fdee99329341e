"""`normtheory.plots.points.outcome_points`: the runs that met the criterion as dots, the others
as crosses, every point drawn once at its own coordinates, a label only where points are."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from normtheory.plots import outcome_points


def _groups(ax):
    """(offsets, label, sizes) of each scatter, in drawing order."""
    return [(c.get_offsets().data, c.get_label(), c.get_sizes()) for c in ax.collections]


def test_ok_points_are_dots_the_others_crosses_with_their_labels():
    fig, ax = plt.subplots()
    x, y, ok = [1.0, 2.0, 3.0], [10.0, 20.0, 30.0], [True, False, True]
    outcome_points(ax, x, y, ok, color="red", label="BN", failed_label="BN, failed", sizes=(5, 9))
    (dots, dot_label, dot_size), (crosses, cross_label, cross_size) = _groups(ax)
    np.testing.assert_array_equal(dots, [[1.0, 10.0], [3.0, 30.0]])
    np.testing.assert_array_equal(crosses, [[2.0, 20.0]])
    assert (dot_label, cross_label) == ("BN", "BN, failed")
    assert (list(dot_size), list(cross_size)) == ([5.0], [9.0])
    markers = [c.get_paths()[0] for c in ax.collections]
    assert len(markers[0].vertices) != len(markers[1].vertices)  # a circle and a cross
    colors = {tuple(c.get_facecolor()[0]) for c in ax.collections}
    assert len(colors) == 1
    plt.close(fig)


def test_a_group_without_points_gets_no_label():
    fig, ax = plt.subplots()
    outcome_points(ax, [1.0, 2.0], [1.0, 2.0], [True, True], color="k", label="a", failed_label="b")
    labels = [c.get_label() for c in ax.collections]
    assert labels[0] == "a" and not labels[1].startswith("b")  # matplotlib's "_child…" default
    assert "b" not in ax.get_legend_handles_labels()[1]
    plt.close(fig)


def test_lengths_must_agree():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="shapes"):
        outcome_points(ax, [1.0, 2.0], [1.0], [True, False], color="k")
    plt.close(fig)
