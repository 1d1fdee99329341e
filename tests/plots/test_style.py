"""Norm names and colours: words a reader knows, one colour per norm in every figure."""

import numpy as np
import pytest

from normtheory.norms import list_norms
from normtheory.plots import hue_order, norm_label, norm_order, norm_palette


@pytest.mark.parametrize(
    ("spec", "label"),
    [
        ("batch", "BN"),
        ("group", "GN"),
        ("group+ws", "GN + WS"),
        ("layer", "LN"),
        ("layer+ws", "LN + WS"),
        ("instance", "IN"),
        ("frn", "FRN + TLU"),
        ("batch_group", "BGN"),
        ("ghost_batch", "Ghost BN"),
        ("none", "no norm"),
        ("batch_renorm", "Batch Renorm"),
        ("batch_kalman", "BKN"),
        ("some_new_norm", "some new norm"),
    ],
)
def test_norm_labels(spec, label):
    assert norm_label(spec) == label


@pytest.mark.parametrize("name", list_norms())
def test_every_registered_norm_has_a_label_in_words(name):
    assert "_" not in norm_label(name) and norm_label(f"{name}+ws").endswith(" + WS")


def test_every_registered_norm_has_its_own_colour_in_canonical_order():
    norms = [*list_norms(), "group+ws", "layer+ws"]
    colours = norm_palette(norms)
    assert len({tuple(np.round(c, 3)) for c in colours.values()}) == len(norms)
    assert norm_order(["none", "group", "batch"]) == ["batch", "group", "none"]


def test_none_and_batch_colours_are_far_apart():
    """Regression: "none" was tab10's cyan, hard to tell from BN's blue in every figure."""
    pal = norm_palette(["batch", "none", "group"])
    assert np.abs(np.subtract(pal["batch"], pal["none"])).sum() > 0.6
    assert len({tuple(c) for c in norm_palette(["batch", "none", "batch+ws"]).values()}) == 3


def test_other_hues_read_numbers_as_numbers():
    tags = ["Ghost BN 16", "BN", "Ghost BN 2", "Ghost BN 4"]
    assert hue_order(tags, "tag") == ["BN", "Ghost BN 2", "Ghost BN 4", "Ghost BN 16"]
    assert hue_order([32, 2, 8], "batch_size") == [2, 8, 32]
