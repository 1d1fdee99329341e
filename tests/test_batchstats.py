"""Batch-statistics pieces against closed forms: inference example weighing, the train/eval
discrepancy, dead channels and StatDiff, and the Singularities hook."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normtheory.data import load_dataset
from normtheory.hooks import Monitor, Singularities
from normtheory.measure.outcomes import example_weighing, train_eval_discrepancy
from normtheory.measure.singularity import channel_health
from normtheory.models import build_model
from normtheory.norms import BatchNorm


def _trained_bn_convnet(steps=20):
    from normtheory.train import TrainConfig, train

    train_set, _ = load_dataset("digits", max_train=256)
    torch.manual_seed(0)
    model = build_model(
        "convnet", norm="batch", in_shape=train_set.in_shape, num_classes=10, width=8, depth=2
    )
    train(
        model,
        train_set,
        None,
        TrainConfig(lr=0.1, batch_size=32, steps=steps, seed=0, device="cpu"),
    )
    return model.eval(), train_set


def test_example_weight_zero_is_standard_eval_and_restores():
    model, data = _trained_bn_convnet()
    x = data.inputs[:16]
    with torch.no_grad():
        plain = model(x)
        with example_weighing(model, 0.0):
            zero = model(x)
        with example_weighing(model, 0.5):
            half = model(x)
        after = model(x)
    assert torch.equal(plain, zero) and torch.equal(plain, after)
    assert not torch.allclose(plain, half)
    assert all(m.example_weight == 0.0 for m in model.modules() if isinstance(m, BatchNorm))


def test_example_weight_one_on_one_example_uses_its_own_statistics():
    """w = 1: each channel is normalized by the example's own mean and variance over space,
    as instance normalization does (then BN's γ, β)."""
    torch.manual_seed(0)
    bn = BatchNorm(3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([5.0, -2.0, 0.5]))
        bn.running_var.copy_(torch.tensor([9.0, 0.25, 4.0]))
        bn.weight.copy_(torch.tensor([1.5, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    model = nn.Sequential(bn).eval()
    x = torch.randn(1, 3, 4, 5, dtype=torch.float32) * 3 + 1
    with torch.no_grad(), example_weighing(model, 1.0):
        got = model(x)
    expected = F.instance_norm(x, eps=bn.eps) * bn.weight.view(1, 3, 1, 1) + bn.bias.view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_intermediate_example_weight_is_the_mixture_of_the_claim():
    """0 < w < 1: μ = (1 − w) μ_pop + w μ_i and σ² = (1 − w) σ²_pop + w σ²_i + w(1 − w)(μ_i −
    μ_pop)² (CLAIMS.md, EX-WEIGH), against a naive float64 loop over examples and channels."""
    torch.manual_seed(1)
    bn = BatchNorm(2).double()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.7, -1.0]))
        bn.running_var.copy_(torch.tensor([2.0, 0.5]))
        bn.weight.copy_(torch.tensor([1.2, -0.4]))
        bn.bias.copy_(torch.tensor([0.3, 0.0]))
    model = nn.Sequential(bn).eval()
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64) * 2 + 0.5
    w = 0.3
    with torch.no_grad(), example_weighing(model, w):
        got = model(x)
    expected = torch.empty_like(x)
    for i in range(3):
        for c in range(2):
            v = x[i, c]
            mu_i, var_i = v.mean(), v.var(unbiased=False)
            mu_p, var_p = bn.running_mean[c], bn.running_var[c]
            mu = (1 - w) * mu_p + w * mu_i
            var = (1 - w) * var_p + w * var_i + w * (1 - w) * (mu_i - mu_p) ** 2
            expected[i, c] = (v - mu) / torch.sqrt(var + bn.eps) * bn.weight[c] + bn.bias[c]
    torch.testing.assert_close(got, expected)


def test_example_weighing_errors():
    bad = pytest.raises(ValueError, match="example weight must be a float in \\[0, 1\\], got 2")
    with bad, example_weighing(nn.Sequential(BatchNorm(2)), 2):
        pass
    with (
        pytest.raises(ValueError, match="has none"),
        example_weighing(nn.Sequential(nn.Linear(2, 2)), 0.5),
    ):
        pass


def test_train_eval_discrepancy_closed_form_and_state_kept():
    model, data = _trained_bn_convnet()
    x, y = data.inputs[:32], data.targets[:32]
    buffers = [b.clone() for b in model.buffers()]
    got = train_eval_discrepancy(model, x, y)
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))
    assert not model.training
    with torch.no_grad():
        model.train()
        out_train = model(x)
        model.eval()
        out_eval = model(x)
    for a, b in zip(buffers, model.buffers()):
        b.copy_(a)
    assert got["train_loss"] == pytest.approx(F.cross_entropy(out_train, y).item())
    assert got["eval_loss"] == pytest.approx(F.cross_entropy(out_eval, y).item())
    assert got["loss_gap"] == pytest.approx(got["eval_loss"] - got["train_loss"])
    assert got["output_gap"] == pytest.approx(
        float((out_train - out_eval).norm() / out_eval.norm())
    )


def test_channel_health_hand_built():
    y = torch.zeros(4, 3, 2, 2)
    y[:, 0] = -1.0  # channel 0: always ≤ 0 → dead
    y[0, 1, 0, 0] = 2.0  # channel 1: on for example 0 only
    y[:, 2] = torch.randn(4, 2, 2).abs() + 0.1  # channel 2: always on
    h = channel_health(y)
    assert h.dead.tolist() == [True, False, False]
    assert h.off_fraction.tolist() == [1.0, 0.75, 0.0]
    ch1 = y[:, 1].reshape(-1).double()
    mu, sd = ch1.mean(), ch1.std(correction=0)
    assert h.stat_diff[1].item() == pytest.approx(float((mu**2 + (sd - 1) ** 2).sqrt()))
    assert h.mean_shift[1].item() == pytest.approx(float(mu / sd))
    assert h.stat_diff[0].item() == pytest.approx(2**0.5)  # mean −1, sd 0
    assert h.summary()["dead"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="N >= 2"):
        channel_health(torch.zeros(1, 3))


def test_singularities_hook_records_every_norm_layer():
    model, data = _trained_bn_convnet()
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
