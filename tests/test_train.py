"""The training loop: determinism, divergence as an outcome, schedules, validation."""

import math

import pytest
import torch

from normtheory.data import load_dataset
from normtheory.models import build_model
from normtheory.train import TrainConfig, lr_at, resolve_device, train


def _model(norm="batch"):
    torch.manual_seed(0)
    return build_model("mlp", norm=norm, in_shape=(32,), num_classes=4, width=16, depth=2)


@pytest.fixture(scope="module")
def data():
    return load_dataset("gaussian_mixture", n_train=256, n_test=128)


def test_same_seed_same_result_and_loss_decreases(data):
    config = TrainConfig(lr=0.1, momentum=0.9, batch_size=32, steps=60, seed=1, device="cpu")
    a = train(_model(), *data, config)
    b = train(_model(), *data, config)
    assert a.final == b.final and a.status == "completed" and a.steps_done == 60
    assert a.final["test_acc"] > 0.7


def test_divergence_is_recorded_not_raised(data):
    config = TrainConfig(lr=1e6, batch_size=32, steps=50, device="cpu")
    result = train(_model("none"), *data, config)
    assert result.status == "diverged"
    assert result.diverged_at is not None and result.diverged_at < 50
    assert result.steps_done == result.diverged_at
    assert not math.isfinite(result.final["train_loss"])


def test_lr_schedules():
    c = TrainConfig(lr=1.0, steps=100, schedule="cosine")
    assert (
        lr_at(c, 0) == 1.0
        and lr_at(c, 50) == pytest.approx(0.5)
        and lr_at(c, 100) == pytest.approx(0.0)
    )
    s = TrainConfig(lr=1.0, steps=100, schedule="step")
    assert [lr_at(s, t) for t in (0, 49, 50, 75)] == pytest.approx([1.0, 1.0, 0.1, 0.01])


def test_warmup_cosine_rises_linearly_over_five_percent_then_follows_the_cosine_to_zero():
    c = TrainConfig(lr=1.0, steps=200, schedule="warmup_cosine")  # warm-up: 10 steps
    assert [lr_at(c, t) for t in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_at(c, 10) == pytest.approx(1.0)
    assert lr_at(c, 105) == pytest.approx(0.5)  # half way through the 190 cosine steps
    assert lr_at(c, 199) == pytest.approx(0.5 * (1 + math.cos(math.pi * 189 / 190)))
    one = TrainConfig(lr=1.0, steps=3, schedule="warmup_cosine")  # at least one warm-up step
    assert [lr_at(one, t) for t in (0, 1, 2)] == pytest.approx([1.0, 1.0, 0.5])


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"optimizer": "lbfgs"}, "lbfgs"),
        ({"schedule": "poly"}, "poly"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"steps": 0}, "steps"),
    ],
)
def test_bad_config_names_the_value(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="tpu"):
        resolve_device("tpu")


def test_batch_larger_than_dataset_is_a_clear_error(data):
    with pytest.raises(ValueError, match="batch_size 512"):
        train(_model(), *data, TrainConfig(batch_size=512, steps=1, device="cpu"))


def test_adam_and_eval_every_records(data):
    from normtheory.hooks import LossAccuracy

    config = TrainConfig(
        optimizer="adam", lr=1e-2, batch_size=32, steps=20, eval_every=5, device="cpu"
    )
    result = train(_model("group"), *data, config, [LossAccuracy()])
    evals = result.records[result.records.metric == "outcome.test_acc"]
    assert list(evals.step) == [5, 10, 15, 20]
