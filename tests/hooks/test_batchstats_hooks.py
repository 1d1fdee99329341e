"""The batch-statistics hooks against the pure measures they wrap: `ExampleWeighing`'s records at
the end of training equal the measures called by hand on the trained net; `Singularities` records
every norm layer's channel health, StatDiff matching the closed form of a train-mode BN output;
`BatchDependence` records at the end the measure called by hand on the trained net."""

import numpy as np
import pytest
import torch

from normtheory.data import load_dataset
from normtheory.hooks import (
    BatchDependence,
    Context,
    ExampleWeighing,
    LossAccuracy,
    Monitor,
    Singularities,
    at_end,
)
from normtheory.measure.batch_dependence import batch_dependence
from normtheory.measure.outcomes import evaluate, example_weighing, train_eval_discrepancy
from normtheory.models import build_model
from normtheory.norms import BatchNorm
from normtheory.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")

MULTIPLES = (0.0, 1.0, 4.0)
B = 2  # so that w = 4 / B is clipped to 1


def _run(run_seed=3, **kw):
    train_set, test_set = load_dataset("digits", max_train=128, max_test=64)
    torch.manual_seed(0)
    model = build_model(
        "convnet", norm="batch", in_shape=train_set.in_shape, num_classes=10, width=4, depth=2
    )
    hook = ExampleWeighing(
        train_set=train_set, test_set=test_set, batch_size=B, multiples=MULTIPLES, **kw
    )
    config = TrainConfig(lr=0.05, batch_size=B, steps=6, seed=run_seed, device="cpu")
    result = train(model, train_set, test_set, config, [LossAccuracy(every=2), hook])
    return model, train_set, test_set, result


def _by_hand(model, train_set, test_set, seed, n_batches=16):
    """The old `example_weighing` study's post-training loop, on the trained `model`."""
    gen = torch.Generator().manual_seed(seed)
    batches = [torch.randperm(len(train_set), generator=gen)[:B] for _ in range(n_batches)]
    out = {}
    for m in MULTIPLES:
        with example_weighing(model, min(m / B, 1.0)):
            test = evaluate(model, test_set)
            gaps = [train_eval_discrepancy(model, *train_set[i]) for i in batches]
        key = f"{m:g}"
        out |= {
            (ExampleWeighing.TEST_ACC, key): test["acc"],
            (ExampleWeighing.TEST_LOSS, key): test["loss"],
            (ExampleWeighing.LOSS_GAP, key): float(np.mean([g["loss_gap"] for g in gaps])),
            (ExampleWeighing.OUTPUT_GAP, key): float(np.mean([g["output_gap"] for g in gaps])),
        }
    return out


def _records(result) -> dict:
    rows = result.records[result.records["metric"].str.startswith(ExampleWeighing.PREFIX)]
    assert (rows["step"] == result.steps_done).all()  # once, at the end of training
    return {(r.metric, r.key): r.value for r in rows.itertuples()}


def test_example_weighing_records_equal_the_measures_at_the_end():
    model, train_set, test_set, result = _run(run_seed=3)
    got = _records(result)
    assert got == _by_hand(model, train_set, test_set, seed=1000 + 3)  # exactly, every record
    assert len(got) == len(MULTIPLES) * len(ExampleWeighing.METRICS)
    # w = 0 is the standard evaluation the loop ended with.
    assert got[ExampleWeighing.TEST_ACC, "0"] == result.final["test_acc"]
    # the trained net is left as it was: every BatchNorm back at w = 0
    assert all(m.example_weight == 0 for m in model.modules() if isinstance(m, BatchNorm))


def test_example_weighing_batches_follow_the_run_seed():
    """By default the batches are drawn with seed 1000 + the run's seed; `seed` overrides it."""
    *_, default = _run(run_seed=3)
    model, train_set, test_set, other = _run(run_seed=3, seed=7)
    assert _records(other) == _by_hand(model, train_set, test_set, seed=7)
    gaps = [k for k in _records(default) if k[0] == ExampleWeighing.OUTPUT_GAP]
    assert any(_records(default)[k] != _records(other)[k] for k in gaps)


def test_example_weighing_skips_a_diverged_run_and_refuses_bad_arguments():
    train_set, test_set = load_dataset("digits", max_train=64, max_test=32)
    hook = ExampleWeighing(train_set=train_set, test_set=test_set, batch_size=4)
    assert hook.events == ("end",) and repr(hook.schedule) == repr(at_end())
    model = build_model("mlp", norm="batch", in_shape=train_set.in_shape, num_classes=10)
    assert hook("end", Context(model=model, extras={"status": "diverged"})) == []
    with pytest.raises(ValueError, match="batch_size"):
        ExampleWeighing(train_set=train_set, test_set=test_set, batch_size=0)
    with pytest.raises(ValueError, match="multiples"):
        ExampleWeighing(train_set=train_set, test_set=test_set, batch_size=4, multiples=(-1,))


def test_singularities_hook_records_every_norm_layer(trained_bn_convnet):
    model, data = trained_bn_convnet
    model.train()
    monitor = Monitor(model, [Singularities(probe=data.inputs[:64])])
    rows = monitor.start()
    assert {r[2] for r in rows} == {"norm1", "norm2"}
    assert {r[1] for r in rows} == {
        "singular.dead",
        "singular.off",
        "singular.stat_diff",
        "singular.mean_shift",
    }
    # train-mode BN output: per channel mean β and sd |γ| (over examples and positions)
    bn = model.norm1
    gamma, beta = bn.weight.detach().double(), bn.bias.detach().double()
    expected = ((beta**2 + (gamma.abs() - 1) ** 2).sqrt()).mean()
    got = next(r[3] for r in rows if r[1] == "singular.stat_diff" and r[2] == "norm1")
    assert got == pytest.approx(float(expected), abs=1e-3)


@pytest.mark.parametrize("norm", ["frn", "batch"])
def test_batch_dependence_records_equal_the_measure_at_the_end(norm):
    train_set, test_set = load_dataset("digits", max_train=64, max_test=32)
    probe, other = train_set.tensors[0][:8], train_set.tensors[0][8:16]
    torch.manual_seed(0)
    model = build_model(
        "convnet", norm=norm, in_shape=train_set.in_shape, num_classes=10, width=4, depth=2
    )
    hook = BatchDependence(probe=(probe, train_set.tensors[1][:8]), other=other)
    assert hook.events == ("end",) and repr(hook.schedule) == repr(at_end())
    config = TrainConfig(lr=0.05, batch_size=8, steps=4, seed=0, device="cpu")
    result = train(model, train_set, test_set, config, [hook])
    rows = result.records[result.records["metric"] == BatchDependence.MAX_CHANGE]
    assert (rows["step"] == result.steps_done).all()
    got = dict(zip(rows["key"], rows["value"], strict=True))
    assert got == batch_dependence(model, probe, other) and set(got) == {"norm1", "norm2"}
    if norm == "frn":
        assert max(got.values()) <= 1e-12
    else:
        assert min(got.values()) > 1e-3
    assert hook("end", Context(model=model, extras={"status": "diverged"})) == []
