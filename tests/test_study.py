"""`normtheory.study`: a `Grid` crosses its cases with its axes over the base cell and labels the
cells apart; CLI-style overrides set fields, make axes and parse values by the field's type;
`cross` combines case groups; a `Study` refuses unknown claims and profiles."""

import dataclasses

import pytest

from normtheory.experiment import TrainCell
from normtheory.study import Grid, Profile, Study, cross
from normtheory.sweep import cell_label

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


def test_cross_gives_every_combination_and_labels_tell_them_apart():
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


def test_overrides_make_axes_and_parse_by_field_type():
    grid = Grid(TrainCell(), {"lr": (0.1, 0.2)})
    out = grid.override({"norm": "batch,group", "steps": "7", "residual": "no", "lr": "0.3"})
    assert out.axes == {"lr": (0.3,), "norm": ("batch", "group")}  # a given axis stays an axis
    assert out.base.steps == 7 and out.base.residual is False
    assert [(c.norm, c.lr) for c in out.cells()] == [("batch", 0.3), ("group", 0.3)]
    assert grid.axes == {"lr": (0.1, 0.2)}  # the grid itself is unchanged
    for text, value in [("true", True), ("1", True), ("YES", True), ("false", False), ("0", False)]:
        assert Grid(TrainCell()).override({"rescale": text}).base.rescale is value


@pytest.mark.parametrize(
    "overrides,needle",
    [
        ({"colour": "red"}, "unknown key 'colour'; valid keys: dataset, max_train"),
        ({"steps": "many"}, "bad value 'many' for steps: expected int"),
        ({"lr": "0.1,fast"}, "bad value 'fast' for lr: expected float"),
        ({"rescale": "maybe"}, "bad value 'maybe' for rescale: expected bool"),
        ({"steps": "0"}, "steps must be >= 1, got 0"),  # the cell's own check
    ],
)
def test_bad_overrides_name_the_key_or_value(overrides, needle):
    with pytest.raises(ValueError) as info:
        Grid(TrainCell()).override(overrides).cells()
    assert needle in str(info.value)


def test_unknown_axes_are_refused():
    with pytest.raises(ValueError, match="unknown grid axes \\['colour'\\]"):
        Grid(TrainCell(), {"colour": ("red",)})


def _study(**kw):
    profile = Profile(Grid(TrainCell(steps=3)), seeds=2)
    return Study(name="s", title="t", claims=("GN-BATCH",), profiles={"quick": profile}, **kw)


def test_profiles_are_looked_up_by_name():
    study = _study()
    assert study.profile("quick").seeds == 2
    with pytest.raises(ValueError, match="unknown profile 'full' for study s; valid: quick"):
        study.profile("full")


def test_unknown_claim_id_is_refused():
    with pytest.raises(ValueError, match="unknown claim 'NOPE'.*GN-BATCH"):
        dataclasses.replace(_study(), claims=("NOPE",))


def test_defaults_measure_loss_and_accuracy_and_run_a_train_cell():
    from normtheory.experiment import run_train_cell
    from normtheory.hooks import LossAccuracy

    study = _study()
    assert study.run_cell is run_train_cell
    assert [type(h) for h in study.hooks(TrainCell())] == [LossAccuracy]
    assert study.statistics(None) == [] and study.figures == {}


@pytest.mark.parametrize(
    "name,tier,expected",
    [("quick", "", "quick"), ("standard", "", "standard"), ("paper", "", "paper"),
     ("full", "", "quick"), ("mine", "", "quick"), ("full", "standard", "standard"),
     ("quick", "paper", "paper")],
)  # fmt: skip
def test_a_profiles_tier_is_its_own_else_its_name_when_a_tier_else_quick(name, tier, expected):
    profile = Profile(Grid(TrainCell()), tier=tier, cost="≈1 min on 2 CPU cores")
    study = Study("s", "t", (), {name: profile})
    assert study.tier(name) == expected and study.tier() == expected


def test_an_unknown_tier_is_refused():
    with pytest.raises(ValueError, match="unknown tier 'huge'; valid: quick, standard, paper"):
        Profile(Grid(TrainCell()), tier="huge")


def test_the_run_manifest_records_tier_cost_protocol_changes_and_steps_per_second(tmp_path):
    import json

    from normtheory.sweep import run_sweep

    grid = Grid(TrainCell(dataset="gaussian_mixture", arch="mlp", steps=4), {"lr": (0.05, 0.1)})
    changes = ("lr 0.01 → 0.05, 0.1: the first run did not learn",)
    profile = Profile(grid, tier="standard", cost="≈2 s", changes=changes)
    study = Study("s", "t", (), {"big": profile})
    run_sweep(study, device="cpu", out=tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert (manifest["tier"], manifest["cost"]) == ("standard", "≈2 s")
    assert manifest["protocol_changes"] == list(changes)
    assert manifest["steps_per_s"] > 0
    for record in (tmp_path / "run" / "cells").glob("*.json"):
        assert json.loads(record.read_text())["steps_per_s"] > 0
    from normtheory.report.tables import Section, meta
    from normtheory.results import load_cells

    cells = load_cells(tmp_path / "run")
    assert (cells["steps_per_s"] > 0).all()
    sec = Section(tmp_path / "run", "s", "t", "", manifest, cells=cells)
    assert " over 2 runs (each " in meta(sec)["steps/s"]
    assert meta(sec)["profile"] == "big (tier standard)"


def test_reference_profiles_are_the_declared_ones_else_the_default_and_must_exist():
    grid = Grid(TrainCell(), {})
    profiles = {"quick": Profile(grid), "standard": Profile(grid)}
    assert Study("s", "t", (), profiles).reference_profiles == ("quick",)
    both = Study("s", "t", (), profiles, reference=("quick", "standard"))
    assert both.reference_profiles == ("quick", "standard")
    with pytest.raises(ValueError, match="reference profile 'paper' of study s is not one of"):
        Study("s", "t", (), profiles, reference=("paper",))


def test_a_profiles_smoke_overrides_are_cell_fields_given_as_cli_strings():
    profile = Profile(
        Grid(TrainCell(), {"batch_size": (2, 32)}),
        smoke={"max_train": 32, "epochs": 1, "residual": False, "batch_size": "2,32"},
    )
    assert profile.smoke_overrides() == {
        "max_train": "32", "epochs": "1", "residual": "False", "batch_size": "2,32"
    }  # fmt: skip
    cells = profile.grid.override(profile.smoke_overrides()).cells()
    assert [(c.max_train, c.epochs, c.residual, c.batch_size) for c in cells] == [
        (32, 1, False, 2), (32, 1, False, 32)
    ]  # fmt: skip
    assert Profile(Grid(TrainCell())).smoke == {}
    with pytest.raises(ValueError, match=r"unknown smoke keys \['stepz'\]; valid keys: .*steps"):
        Profile(Grid(TrainCell()), smoke={"stepz": 3})
