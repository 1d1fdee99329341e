"""Geometry hooks against closed forms: the span they accumulate is the span of the training
batches, SGD leaves W P⊥ alone, weight decay shrinks it by (1 − ηλ)^t, Adam moves it, and the
scale-invariance records are the identities' quantities of the actual weights."""

import math

import pytest
import torch

from normtheory.data import load_dataset
from normtheory.hooks import Hook, Monitor, OrthogonalWeightNorm, ScaleInvariance
from normtheory.models import build_model
from normtheory.optim import WeightRescaling
from normtheory.state import preserved
from normtheory.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


def _low_rank(n_train=256, rank=6, dim=24):
    return load_dataset("teacher", n_train=n_train, n_test=64, dim=dim, rank=rank)


def _mlp(train_set, norm="batch", seed=0):
    torch.manual_seed(seed)
    return build_model(
        "mlp",
        norm=norm,
        in_shape=train_set.in_shape,
        num_classes=train_set.num_classes,
        width=16,
        depth=2,
    )


def _frame(result, metric, key):
    rec = result.records
    sub = rec[(rec["metric"] == metric) & (rec["key"] == key)]
    return sub.set_index("step")["value"]


class _Prober(Hook):
    """Runs extra forwards (random inputs, train mode) that must not enter the span."""

    events = ("after_backward", "after_step")

    def on(self, event, ctx):
        with preserved(ctx.model):
            ctx.model(torch.randn(8, *ctx.inputs.shape[1:]) * 100)
        return []


def test_span_is_the_span_of_the_training_batches_only():
    train_set, _ = _low_rank(n_train=256)
    model = _mlp(train_set)
    hook = OrthogonalWeightNorm(every=4)
    # One epoch exactly: every training example is used once, so the Gram is XᵀX.
    config = TrainConfig(lr=0.1, batch_size=32, steps=8, seed=0, device="cpu")
    train(model, train_set, None, config, [_Prober(name="prober"), hook])
    x = train_set.inputs.double()
    torch.testing.assert_close(hook.spans["fc1"].gram(), x.T @ x)
    assert hook.spans["fc1"].dim == 6
    assert hook.spans["fc1"].n_examples == 256


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_leaves_the_orthogonal_component_unchanged(momentum):
    train_set, _ = _low_rank()
    model = _mlp(train_set)
    config = TrainConfig(lr=0.2, momentum=momentum, batch_size=32, steps=40, seed=1, device="cpu")
    result = train(model, train_set, None, config, [OrthogonalWeightNorm(every=10)])
    drift, ratio = _frame(result, "orth.drift", "fc1"), _frame(result, "orth.ratio", "fc1")
    assert len(drift) == 5  # steps 0, 10, 20, 30 and the end
    assert drift.max() < 1e-5
    assert (ratio - 1).abs().max() < 1e-5
    assert _frame(result, "orth.complement_dim", "fc1").iloc[-1] == 24 - 6
    # The weight itself moved a lot: the test would see a change outside the span.
    w0 = _mlp(train_set).fc1.weight.detach()
    assert (model.fc1.weight.detach() - w0).norm() > 0.05 * w0.norm()


def test_weight_decay_shrinks_it_by_one_minus_lr_lambda_per_step():
    train_set, _ = _low_rank()
    model = _mlp(train_set)
    lr, wd = 0.2, 0.05
    config = TrainConfig(lr=lr, weight_decay=wd, batch_size=32, steps=30, seed=2, device="cpu")
    result = train(model, train_set, None, config, [OrthogonalWeightNorm(every=10)])
    ratio = _frame(result, "orth.ratio", "fc1")
    # Records at after_step of step s (0-based) follow s + 1 decays; the end record follows 30.
    expected = [(1 - lr * wd) ** (s + 1) for s in ratio.index[:-1]] + [(1 - lr * wd) ** 30]
    assert ratio.to_numpy() == pytest.approx(expected, rel=1e-5)


def test_adam_moves_it():
    train_set, _ = _low_rank()
    model = _mlp(train_set)
    config = TrainConfig(optimizer="adam", lr=0.01, batch_size=32, steps=20, seed=0, device="cpu")
    result = train(model, train_set, None, config, [OrthogonalWeightNorm(every=10)])
    assert _frame(result, "orth.drift", "fc1").iloc[-1] > 1e-2


def test_conv_layers_of_grey_images_on_three_channels():
    train_set, _ = load_dataset("digits", max_train=128, channels=3)
    torch.manual_seed(0)
    model = build_model(
        "convnet", norm="batch", in_shape=train_set.in_shape, num_classes=10, width=8, depth=2
    )
    config = TrainConfig(lr=0.1, momentum=0.9, batch_size=32, steps=12, seed=0, device="cpu")
    result = train(model, train_set, None, config, [OrthogonalWeightNorm(every=6)])
    # 3 identical channels: the 3×3 patches span 9 of 27 dimensions.
    assert _frame(result, "orth.complement_dim", "conv1").iloc[-1] == 18
    assert _frame(result, "orth.drift", "conv1").max() < 1e-5


def test_rescaling_shrinks_the_orthogonal_component():
    train_set, _ = _low_rank()
    model = _mlp(train_set)
    config = TrainConfig(lr=0.2, batch_size=32, steps=20, seed=0, device="cpu", rescale=True)
    result = train(model, train_set, None, config, [OrthogonalWeightNorm(every=10)])
    assert _frame(result, "orth.ratio", "fc1").iloc[-1] < 0.9
    rows = model.fc1.weight.detach().norm(dim=1)
    torch.testing.assert_close(rows, torch.ones_like(rows))


def test_in_your_own_loop_and_the_errors():
    train_set, _ = _low_rank()
    model = _mlp(train_set)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hook = OrthogonalWeightNorm(layers=["fc1"])
    monitor = Monitor(model, [hook])
    x, y = train_set.inputs[:32], train_set.targets[:32]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    with pytest.raises(RuntimeError, match="start"):
        monitor.after_backward(0, inputs=x)
    monitor.start()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    with pytest.raises(ValueError, match="inputs=x"):
        monitor.after_backward(0)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    with pytest.raises(ValueError, match="very tensor"):
        monitor.after_backward(0, inputs=x.clone())
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    monitor.after_backward(0, inputs=x)
    opt.step()
    rows = monitor.after_step(0)
    assert {r[2] for r in rows} == {"fc1", ""}
    assert ("orth.updates", "", 1.0) in [r[1:] for r in rows]
    assert any(r[1] == "orth.drift" and r[3] < 1e-6 for r in rows)
    monitor.end(1)
    assert not model._forward_pre_hooks and not model.fc1._forward_pre_hooks  # detached
    with pytest.raises(ValueError, match="unknown or unsupported layers.*fc1"):
        OrthogonalWeightNorm(layers=["nope"])._attach(model)


# -- ScaleInvariance --------------------------------------------------------------------------


def _digits_bn(norm="batch"):
    train_set, _ = load_dataset("digits", max_train=256)
    torch.manual_seed(0)
    model = build_model(
        "convnet",
        norm=norm,
        in_shape=train_set.in_shape,
        num_classes=10,
        width=8,
        depth=2,
        norm_kw={"groups": 2} if norm == "group" else {},
    )
    return model, train_set


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_growth_identity_holds_for_bn_fed_weights_in_training(weight_decay):
    model, train_set = _digits_bn()
    config = TrainConfig(
        lr=0.1, weight_decay=weight_decay, batch_size=32, steps=10, seed=0, device="cpu"
    )
    hook = ScaleInvariance(params=None)
    result = train(
        model, train_set, None, config, [hook, ScaleInvariance(params=["head"], name="head")]
    )
    assert hook._names == ["conv1.weight", "conv2.weight"]
    rec = result.records
    for name in hook._names:
        res = rec[(rec["metric"] == "scale_inv.residual_channel") & (rec["key"] == name)]["value"]
        cos = rec[(rec["metric"] == "scale_inv.cosine_channel") & (rec["key"] == name)]["value"]
        assert len(res) == 10 and res.max() < 1e-4  # BN's ε = 1e-5 and float32 rounding
        assert cos.max() < 1e-3
    # The head feeds the loss directly: the identity fails by the cross term.
    head = rec[(rec["metric"] == "head.residual") & (rec["key"] == "head.weight")]["value"]
    assert head.abs().max() > 1e-3


def test_norm_and_effective_lr_are_those_of_the_weight_after_the_step():
    model, train_set = _digits_bn()
    config = TrainConfig(lr=0.1, batch_size=32, steps=3, seed=0, device="cpu")
    result = train(model, train_set, None, config, [ScaleInvariance(params=["conv1"])])
    rec = result.records
    last = rec[rec["step"] == 2].set_index("metric")["value"]
    w = model.conv1.weight.detach().double()
    assert last["scale_inv.norm"] == pytest.approx(float(w.norm()), rel=1e-12)
    assert last["scale_inv.effective_lr"] == pytest.approx(0.1 / float(w.norm()) ** 2, rel=1e-12)
    rows = w.reshape(w.shape[0], -1).square().sum(1)
    assert last["scale_inv.effective_lr_channel"] == pytest.approx(float((0.1 / rows).mean()))


def test_group_norm_is_invariant_as_a_whole_not_per_channel():
    model, train_set = _digits_bn(norm="group")
    config = TrainConfig(lr=0.1, batch_size=32, steps=5, seed=0, device="cpu")
    result = train(model, train_set, None, config, [ScaleInvariance()])
    rec = result.records
    conv1 = rec[rec["key"] == "conv1.weight"].groupby("metric")["value"]
    assert conv1.max()["scale_inv.residual"] < 1e-4
    assert conv1.max()["scale_inv.residual_channel"] > 1e-3
    assert conv1.max()["scale_inv.cosine_channel"] > 1e-2


def test_no_residual_where_the_identity_does_not_apply():
    model, train_set = _digits_bn()
    for config in (
        TrainConfig(lr=0.1, momentum=0.9, batch_size=32, steps=3, seed=0, device="cpu"),
        TrainConfig(optimizer="adam", lr=0.01, batch_size=32, steps=3, seed=0, device="cpu"),
        TrainConfig(lr=0.1, batch_size=32, steps=3, seed=0, device="cpu", rescale=True),
    ):
        result = train(model, train_set, None, config, [ScaleInvariance()])
        metrics = set(result.records["metric"])
        assert "scale_inv.cosine" in metrics and "scale_inv.residual" not in metrics


def test_scale_invariance_unknown_param():
    model, train_set = _digits_bn()
    config = TrainConfig(lr=0.1, batch_size=32, steps=1, seed=0, device="cpu")
    with pytest.raises(ValueError, match="'nope' is neither"):
        train(model, train_set, None, config, [ScaleInvariance(params=["nope"])])


def test_train_with_rescale_needs_an_invariant_weight_and_excludes_it_from_decay():
    train_set, _ = _low_rank()
    model = _mlp(train_set, norm="none")
    config = TrainConfig(lr=0.1, batch_size=32, steps=1, seed=0, device="cpu", rescale=True)
    with pytest.raises(ValueError, match="no per-channel scale-invariant weight"):
        train(model, train_set, None, config)
    model = _mlp(train_set)
    groups = WeightRescaling(model).param_groups(0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert math.isclose(
        sum(p.numel() for g in groups for p in g["params"]),
        sum(p.numel() for p in model.parameters()),
    )


def test_layers_whose_inputs_span_everything_get_no_ratio_or_drift():
    # The head (fc_out / "head") sees the 16-wide hidden layer of 256 examples: its span is the
    # whole space, so W P⊥ is rounding error and a ratio of two rounding errors would mean nothing.
    train_set, _ = _low_rank()
    model = _mlp(train_set)
    config = TrainConfig(lr=0.2, momentum=0.9, batch_size=32, steps=20, seed=0, device="cpu")
    result = train(model, train_set, None, config, [OrthogonalWeightNorm(every=10)])
    rec = result.records
    full = rec[(rec["metric"] == "orth.complement_dim") & (rec["value"] == 0)]["key"].unique()
    assert len(full)  # some layer has an empty complement
    for key in full:
        assert _frame(result, "orth.ratio", key).empty, key
        assert _frame(result, "orth.drift", key).empty, key
    assert not _frame(result, "orth.ratio", "fc1").empty  # the low-rank input layer keeps them
