"""Grid cases (bundles of fields that vary together) and the cell's data options."""

import pytest
import torch

from normtheory.data import load_dataset
from normtheory.experiment import TrainCell, cell_data
from normtheory.study import Grid, cell_label

CASES = (
    {"tag": "SGD", "momentum": 0.0},
    {"tag": "SGD+WD", "momentum": 0.0, "weight_decay": 0.01},
    {"tag": "Adam", "optimizer": "adam", "lr": 0.001},
)


def test_cases_cross_the_axes_and_label_by_tag():
    grid = Grid(TrainCell(), {"batch_size": (8, 32)}, CASES)
    cells = grid.cells()
    assert len(cells) == 6
    assert [(c.tag, c.batch_size) for c in cells[:2]] == [("SGD", 8), ("SGD", 32)]
    assert cells[3].weight_decay == 0.01 and cells[3].momentum == 0.0
    assert cells[4].optimizer == "adam" and cells[4].lr == 0.001
    assert cells[0].weight_decay == 0.0 and cells[0].lr == TrainCell().lr  # base fills the rest
    assert grid.label_keys == ["tag", "batch_size"]
    assert cell_label(cells[3], grid.label_keys) == "tag=SGD+WD,batch_size=32"
    untagged = Grid(TrainCell(), {}, ({"lr": 0.1}, {"lr": 0.2, "momentum": 0.0}))
    assert untagged.label_keys == ["lr", "momentum"]


def test_override_of_a_case_field_sets_it_in_every_case():
    grid = Grid(TrainCell(), {"batch_size": (8,)}, CASES).override({"lr": "0.5", "steps": "7"})
    assert [c.lr for c in grid.cells()] == [0.5, 0.5, 0.5]
    assert {c.steps for c in grid.cells()} == {7}
    with pytest.raises(ValueError, match="lr is set by the study's cases.*SGD, SGD\\+WD, Adam"):
        Grid(TrainCell(), {}, CASES).override({"lr": "0.1,0.2"})


def test_bad_cases_are_refused():
    with pytest.raises(ValueError, match="unknown case keys \\['nope'\\]"):
        Grid(TrainCell(), {}, ({"nope": 1},))
    with pytest.raises(ValueError, match="set by both the cases and the axes"):
        Grid(TrainCell(), {"lr": (0.1,)}, ({"lr": 0.2},))


def test_grey_images_on_several_channels():
    grey, _ = load_dataset("digits", max_train=16)
    rgb, _ = load_dataset("digits", max_train=16, channels=3)
    assert rgb.in_shape == (3, 8, 8)
    for c in range(3):
        assert torch.equal(rgb.inputs[:, c], grey.inputs[:, 0])
    with pytest.raises(ValueError, match="unknown keyword 'channels' for 'teacher'"):
        load_dataset("teacher", channels=3)
    with pytest.raises(ValueError, match="channels"):
        load_dataset("digits", channels=0)


def test_cell_data_options():
    train, _ = cell_data(TrainCell(dataset="teacher", data_rank=5))
    assert torch.linalg.matrix_rank(train.inputs.double(), rtol=1e-4) == 5
    train, _ = cell_data(TrainCell(dataset="mnist1d", data_channels=2))
    assert train.in_shape == (2, 40)
    with pytest.raises(ValueError, match="data_rank applies to the synthetic datasets"):
        TrainCell(dataset="digits", data_rank=4)
    with pytest.raises(ValueError, match="data_channels applies to the single-channel"):
        TrainCell(dataset="teacher", data_channels=3)
    with pytest.raises(ValueError, match="data_channels must be >= 1"):
        TrainCell(data_channels=0)


def test_cross_gives_every_combination_and_labels_tell_them_apart():
    from normtheory.study import cross

    setups = ({"arch": "mlp"}, {"arch": "convnet", "width": 8})
    cases = cross(setups, CASES)
    assert len(cases) == 6
    assert cases[4] == {
        "arch": "convnet",
        "width": 8,
        "tag": "SGD+WD",
        "momentum": 0.0,
        "weight_decay": 0.01,
    }
    grid = Grid(TrainCell(), {}, cases)
    assert grid.label_keys == ["tag", "arch", "width"]
    labels = [cell_label(c, grid.label_keys) for c in grid.cells()]
    assert len(set(labels)) == 6
