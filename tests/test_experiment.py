"""`normtheory.experiment`: a `TrainCell` builds the training config, norm options, data and model
it declares (known answers: the learning-rate scaling rules of Goyal et al. 2017, steps from an
example budget), refuses fields that make no sense, and `run_train_cell` trains exactly what the
same calls made by hand train."""

import dataclasses
import math

import pytest
import torch

from normtheory.data import load_dataset
from normtheory.experiment import (
    TrainCell,
    build_cell_model,
    cell_data,
    probe_batch,
    run_train_cell,
)
from normtheory.models import build_model
from normtheory.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TrainCell(
    dataset="gaussian_mixture", arch="mlp", norm="batch", width=4, depth=1, steps=3, batch_size=16
)


def test_train_config_carries_every_optimization_field():
    cell = TrainCell(
        optimizer="adam", lr=0.003, momentum=0.5, weight_decay=1e-4, batch_size=8, steps=17,
        schedule="cosine", eval_every=5, rescale=True, gamma_decay=0.1, beta_decay=0.2,
    )  # fmt: skip
    assert cell.train_config(7, device="cpu") == TrainConfig(
        optimizer="adam", lr=0.003, momentum=0.5, weight_decay=1e-4, batch_size=8, steps=17,
        schedule="cosine", eval_every=5, seed=7, device="cpu", rescale=True, gamma_decay=0.1,
        beta_decay=0.2,
    )  # fmt: skip
    assert TrainCell().train_config(0).device == "auto"


@pytest.mark.parametrize(
    "scaling,expected",
    [("none", 0.1), ("linear", 0.1 * 128 / 32), ("sqrt", 0.1 * math.sqrt(128 / 32))],
)
def test_lr_scaling_rules(scaling, expected):
    """linear: lr·B/B_ref; sqrt: lr·√(B/B_ref) (Goyal et al. 2017); none: lr."""
    cell = TrainCell(lr=0.1, batch_size=128, ref_batch=32, lr_scaling=scaling)
    assert cell.effective_lr == pytest.approx(expected, rel=1e-12)
    assert cell.train_config(0).lr == pytest.approx(expected, rel=1e-12)
    small = dataclasses.replace(cell, batch_size=8)  # below the reference batch: smaller lr
    assert small.effective_lr <= cell.effective_lr


def test_an_example_budget_sets_the_steps():
    assert TrainCell(examples=1000, batch_size=32, steps=5).effective_steps == 1000 // 32
    assert TrainCell(examples=1000, batch_size=32).train_config(0).steps == 31
    assert TrainCell(examples=0, steps=5).effective_steps == 5


@pytest.mark.parametrize(
    "norm,expected",
    [
        ("batch", {"example_weight": 0.25}),
        ("group", {"groups": 4}),
        ("group+ws", {"groups": 4}),
        ("ghost_batch", {"ghost_size": 8}),
        ("batch_group", {"groups": 4, "examples_per_group": None}),
        ("layer", {}),
        ("none", {}),
    ],
)
def test_norm_kw_passes_the_options_the_norm_accepts(norm, expected):
    cell = TrainCell(norm=norm, groups=4, ghost_size=8, example_weight=0.25)
    assert cell.norm_kw() == expected


def test_examples_per_group_is_passed_when_set():
    cell = TrainCell(norm="batch_group", groups=4, examples_per_group=2)
    assert cell.norm_kw() == {"groups": 4, "examples_per_group": 2}


@pytest.mark.parametrize(
    "fields,kind,needle",
    [
        ({"width": 8.0}, TypeError, "width must be int, got 8.0 (float)"),
        ({"steps": True}, TypeError, "steps must be int, got True (bool)"),
        ({"rescale": 0}, TypeError, "rescale must be bool, got 0 (int)"),
        ({"norm": 3}, TypeError, "norm must be str, got 3 (int)"),
        ({"dataset": "imagenet"}, ValueError, "unknown dataset 'imagenet'"),
        ({"arch": "vit"}, ValueError, "unknown arch 'vit'"),
        ({"placement": "before"}, ValueError, "unknown placement 'before'"),
        ({"lr_scaling": "cubic"}, ValueError, "unknown lr_scaling 'cubic'"),
        ({"norm": "batchy"}, ValueError, "unknown norm 'batchy'"),
        ({"optimizer": "lbfgs"}, ValueError, "unknown optimizer 'lbfgs'"),
        ({"schedule": "linear"}, ValueError, "unknown schedule 'linear'"),
        ({"lr": 0}, ValueError, "lr must be a positive finite number, got 0"),
        ({"depth": 0}, ValueError, "depth must be >= 1, got 0"),
        ({"ref_batch": 0}, ValueError, "ref_batch must be >= 1, got 0"),
        ({"ghost_size": 0}, ValueError, "ghost_size must be >= 1, got 0"),
        ({"examples": -1}, ValueError, "examples must be >= 0, got -1"),
        ({"eval_every": -1}, ValueError, "eval_every must be >= 0, got -1"),
        ({"dropout_keep": 0.0}, ValueError, "dropout_keep must be in (0, 1]"),
        ({"max_train": 8, "batch_size": 16}, ValueError, "max_train (8) must be at least"),
        ({"examples": 8, "batch_size": 16}, ValueError, "examples (8) must be at least"),
        ({"dataset": "digits", "data_rank": 3}, ValueError, "data_rank applies to the synth"),
        ({"dataset": "teacher", "data_channels": 3}, ValueError, "data_channels applies to"),
        ({"data_channels": 0}, ValueError, "data_channels must be >= 1"),
    ],
    ids=lambda v: str(v)[:30] if isinstance(v, (dict, str)) else "",
)
def test_refused_fields_name_the_bad_value(fields, kind, needle):
    with pytest.raises(kind) as info:
        TrainCell(**fields)
    assert needle in str(info.value) and len(str(info.value).splitlines()) == 1


def test_an_int_is_a_fine_float():
    assert TrainCell(lr=1).effective_lr == 1.0


def test_cell_data_options():
    train_set, _ = cell_data(TrainCell(dataset="teacher", data_rank=5))
    assert torch.linalg.matrix_rank(train_set.inputs.double(), rtol=1e-4) == 5
    train_set, _ = cell_data(TrainCell(dataset="mnist1d", data_channels=2))
    assert train_set.in_shape == (2, 40)


def test_cell_data_is_the_seed_0_split_for_every_seed():
    cell = TrainCell(dataset="digits", max_train=64)
    train_set, test_set = cell_data(cell)
    ref_train, ref_test = load_dataset("digits", seed=0, max_train=64)
    assert torch.equal(train_set.inputs, ref_train.inputs)
    assert torch.equal(test_set.targets, ref_test.targets)
    assert cell_data(dataclasses.replace(cell, lr=1.0))[0] is train_set  # loaded once


def test_probe_batch_is_the_first_training_examples():
    x, y = probe_batch(TINY, n=10)
    train_set, _ = cell_data(TINY)
    assert torch.equal(x, train_set.inputs[:10]) and torch.equal(y, train_set.targets[:10])


def test_the_cell_model_is_seeded_and_built_as_declared():
    cell = dataclasses.replace(TINY, norm="group", groups=2, dropout_keep=0.5, placement="ic")
    a = build_cell_model(cell, (5,), 3, seed=1)
    b = build_cell_model(cell, (5,), 3, seed=1)
    c = build_cell_model(cell, (5,), 3, seed=2)
    assert a.config == dict(
        arch="mlp", norm="group", in_shape=(5,), num_classes=3, width=4, depth=1,
        placement="ic", weight_std=False, dropout_keep=0.5, residual=True,
        norm_kw={"groups": 2}, binary=False,
    )  # fmt: skip
    pa, pb, pc = ([p.detach() for p in m.parameters()] for m in (a, b, c))
    assert all(torch.equal(x, y) for x, y in zip(pa, pb))
    assert not all(torch.equal(x, y) for x, y in zip(pa, pc))


def test_run_train_cell_is_train_on_the_cells_data_model_and_config():
    result = run_train_cell(TINY, 3, device="cpu")
    train_set, test_set = load_dataset("gaussian_mixture", seed=0)
    torch.manual_seed(3)
    model = build_model(
        "mlp", norm="batch", in_shape=train_set.in_shape, num_classes=train_set.num_classes,
        width=4, depth=1,
    )  # fmt: skip
    config = TrainConfig(lr=0.05, momentum=0.9, batch_size=16, steps=3, seed=3, device="cpu")
    ref = train(model, train_set, test_set, config)
    assert result.status == ref.status == "completed"
    assert result.final == ref.final
    other = run_train_cell(TINY, 4, device="cpu")
    assert other.final != result.final  # the seed reaches the model and the data order


def test_epochs_set_equal_passes_and_validation_holds_out_part_of_train():
    """Steps = epochs · (n_train // B) on the training part the cell trains on; with a
    validation share the cell's evaluation set is the held-out part, never the test split."""
    full = TrainCell(max_train=100, batch_size=8, epochs=3)
    assert full.effective_steps == 3 * (100 // 8)
    held = dataclasses.replace(full, validation=0.2)
    train, val = cell_data(held)
    assert len(train) + len(val) == 100 and abs(len(val) - 20) <= 5  # round() per class
    assert held.effective_steps == 3 * (len(train) // 8)
    test = cell_data(full)[1]
    assert len(val) < len(test) and not any(
        torch.equal(v, t) for v in val.inputs[:5] for t in test.inputs
    )
    with pytest.raises(ValueError, match="examples or epochs"):
        TrainCell(examples=100, epochs=2)
    with pytest.raises(ValueError, match="validation"):
        TrainCell(validation=1.0)


def test_transformer_cells_on_images_and_tokens():
    """arch=transformer: its placements, heads and patch from the cell, the vocabulary from
    token data; heads/patch are unused (an override would be ignored) by the other archs."""
    cell = TrainCell(dataset="digits", arch="transformer", placement="post_norm", norm="rms",
                     width=8, depth=1, heads=2, patch=4, steps=2, batch_size=16)  # fmt: skip
    model = build_cell_model(cell, (1, 8, 8), 10, seed=0)
    assert model.config["heads"] == 2 and model.config["patch"] == 4
    assert model.config["vocab_size"] == 0 and model.config["placement"] == "post_norm"
    tokens = dataclasses.replace(cell, dataset="majority", patch=4)
    model = build_cell_model(tokens, (16,), 8, seed=0)
    assert model.config["vocab_size"] == 8
    assert run_train_cell(tokens, 0, device="cpu").status == "completed"
    assert "heads" not in cell.unused_fields() and "heads" in TINY.unused_fields()
    with pytest.raises(ValueError, match="placement"):
        dataclasses.replace(cell, placement="norm_act")
