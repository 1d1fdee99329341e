"""Weight rescaling (WRS) and weight-decay parameter groups."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normtheory.measure.span import InputSpan, orthogonal_weight_norm
from normtheory.models import build_model
from normtheory.optim import AdaptiveGradClipping, WeightRescaling, build_param_groups

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(norm="batch", arch="convnet", **kw):
    torch.manual_seed(0)
    in_shape = (6,) if arch == "mlp" else (2, 6, 6)
    return build_model(arch, norm=norm, in_shape=in_shape, num_classes=3, width=4, depth=2, **kw)


def _row_norms(w):
    return w.detach().double().reshape(w.shape[0], -1).norm(dim=1)


def test_default_names_are_the_per_channel_invariant_weights():
    assert WeightRescaling(_model()).names == ["conv1.weight", "conv2.weight"]
    assert WeightRescaling(_model("group", norm_kw={"groups": 2})).names == []  # "whole" only
    assert WeightRescaling(_model("none")).names == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_after_step_gives_unit_rows_in_place(dtype):
    model = _model().to(dtype)
    weight = model.conv1.weight
    with torch.no_grad():
        weight.mul_(torch.arange(1, 5, dtype=dtype).reshape(4, 1, 1, 1))
        weight[2] = 0  # a zero row cannot be rescaled: it stays zero
    head = model.head.weight.detach().clone()
    WeightRescaling(model).after_step()
    assert model.conv1.weight is weight and weight.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    torch.testing.assert_close(
        _row_norms(weight), torch.tensor([1.0, 1, 0, 1]).double(), atol=tol, rtol=0
    )
    torch.testing.assert_close(
        _row_norms(model.conv2.weight), torch.ones(4).double(), atol=tol, rtol=0
    )
    assert torch.equal(model.head.weight, head)  # not a rescaled weight
    assert not weight.requires_grad or weight.grad is None


def test_explicit_names_and_unknown_names():
    model = _model()
    assert WeightRescaling(model, names=["conv2", "head.weight"]).names == [
        "conv2.weight",
        "head.weight",
    ]
    with pytest.raises(ValueError, match="'conv9'.*conv1"):
        WeightRescaling(model, names=["conv9"])


def test_rescaling_a_bn_fed_net_leaves_its_outputs_unchanged():
    model = _model(norm_kw={"eps": 0.0}).double().train()
    with torch.no_grad():
        model.conv2.weight.mul_(torch.linspace(0.2, 5, 4, dtype=torch.float64).reshape(4, 1, 1, 1))
    x = torch.randn(8, 2, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    before = model(x).detach()
    rescaled = copy.deepcopy(model)
    WeightRescaling(rescaled).after_step()
    assert (_row_norms(model.conv2.weight) - 1).abs().max() > 0.5  # there was something to do
    torch.testing.assert_close(rescaled(x), before, atol=1e-12, rtol=1e-10)


def test_wrs_shrinks_the_orthogonal_component_by_the_growth_factor():
    """With unit rows w_o and ⟨w_o, g_o⟩ = 0 (BN, eps = 0), an SGD step gives
    ‖w_o − η g_o‖² = 1 + η²‖g_o‖² (SI-GROWTH) and leaves w_o P⊥ unchanged (SPAN-ORTH), so after
    rescaling ‖w_o P⊥‖ is divided by √(1 + η² ‖g_o‖²) exactly, step after step."""
    gen = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(6, 2, generator=gen, dtype=torch.float64))
    x = torch.randn(32, 2, generator=gen, dtype=torch.float64) @ basis.T  # rank 2 of R^6
    y = torch.randint(3, (32,), generator=gen)
    model = _model("batch", arch="mlp", norm_kw={"eps": 0.0}).double()
    rescaler = WeightRescaling(model)
    assert rescaler.names == ["fc1.weight", "fc2.weight"]
    rescaler.after_step()
    span = InputSpan(model.fc1).update(x)
    lr = 0.5
    opt = torch.optim.SGD(rescaler.param_groups(weight_decay=0.1), lr=lr)
    orth = start = orthogonal_weight_norm(model.fc1.weight, span).per_channel
    assert orth.min() > 0.1
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        g_sq = model.fc1.weight.grad.detach().square().sum(1)  # (out,)
        opt.step()
        rescaler.after_step()
        expected = orth / torch.sqrt(1 + lr**2 * g_sq)
        orth = orthogonal_weight_norm(model.fc1.weight, span).per_channel
        torch.testing.assert_close(orth, expected, atol=0, rtol=1e-10)
    assert (orth < start).all()  # it shrank, as weight decay would shrink it


def test_param_groups_put_no_decay_on_the_rescaled_weights():
    model = _model()
    rescaler = WeightRescaling(model)
    groups = rescaler.param_groups(weight_decay=0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert groups[1]["params"] == [model.conv1.weight, model.conv2.weight]
    every = [p for g in groups for p in g["params"]]
    assert sorted(map(id, every)) == sorted(id(p) for p in model.parameters())  # each once
    # With zero gradients an SGD step is the decay alone: (1 − ηλ) w, except the excluded weights.
    before = copy.deepcopy(model)
    opt = torch.optim.SGD(groups, lr=0.5)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for (name, p), p0 in zip(model.named_parameters(), before.parameters()):
        factor = 1.0 if name in rescaler.names else 1 - 0.5 * 0.1
        torch.testing.assert_close(p.detach(), factor * p0.detach(), msg=name)


def test_build_param_groups_excludes_by_module_or_parameter_name():
    model = _model()
    groups = build_param_groups(model, 0.01, exclude=["conv1", "head.bias"])
    assert groups[1]["params"] == [model.conv1.weight, model.head.bias]
    assert build_param_groups(model, 0.01) == [
        {"params": list(model.parameters()), "weight_decay": 0.01}
    ]
    with pytest.raises(ValueError, match="nope"):
        build_param_groups(model, 0.01, exclude=["nope"])


@pytest.mark.parametrize("gamma,beta", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.2), (0.3, 0.2)])
def test_norm_decay_applies_exactly_the_intended_penalty(gamma, beta):
    """One SGD step of the training loop against the closed form: weights decay toward 0 by
    weight_decay, γ toward 1 by gamma_decay, β toward 0 by beta_decay, FRN's τ not at all."""
    from normtheory.data import load_dataset
    from normtheory.models import build_model
    from normtheory.optim import norm_affine_params
    from normtheory.train import TrainConfig, train

    train_set, _ = load_dataset("digits", max_train=64)
    lr, wd = 0.1, 0.05
    for norm in ("batch", "frn"):
        torch.manual_seed(0)
        model = build_model(
            "convnet", norm=norm, in_shape=train_set.in_shape, num_classes=10, width=4, depth=2
        )
        with torch.no_grad():  # γ ≠ 1 and β ≠ 0, so every decay term is visible
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        before = {n: p.detach().clone().double() for n, p in model.named_parameters()}
        # the loss gradient of the first batch, computed the way the loop draws it
        probe = copy.deepcopy(model)
        config = TrainConfig(
            lr=lr,
            weight_decay=wd,
            gamma_decay=gamma,
            beta_decay=beta,
            batch_size=64,
            steps=1,
            seed=0,
            device="cpu",
        )
        idx = next(iter([torch.randperm(64, generator=torch.Generator().manual_seed(0))]))
        torch.manual_seed(0)
        F.cross_entropy(probe(train_set.inputs[idx]), train_set.targets[idx]).backward()
        grads = {n: p.grad.double() for n, p in probe.named_parameters()}
        train(model, train_set, None, config)
        kinds = norm_affine_params(model)
        for name, p in model.named_parameters():
            w = before[name]
            if name in kinds["gamma"]:
                decay = gamma * (w - 1)
            elif name in kinds["beta"]:
                decay = beta * w
            elif name in kinds["other"]:
                decay = 0 * w
            else:
                decay = wd * w
            expected = w - lr * (grads[name] + decay)
            torch.testing.assert_close(
                p.detach().double(), expected, rtol=1e-5, atol=1e-6, msg=name
            )


def test_norm_decay_validation_and_names():
    from normtheory.optim import NormDecay

    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    assert NormDecay(model).names == ["1.weight", "1.bias"]
    with pytest.raises(ValueError, match="gamma decay must be a float >= 0, got -1"):
        NormDecay(model, gamma=-1)


# -- adaptive gradient clipping -------------------------------------------------------------------


def _agc_oracle(value: torch.Tensor, grad: torch.Tensor, lam: float, eps: float) -> torch.Tensor:
    """AGC unit by unit on Python floats: rows of dim 0 for ndim ≥ 2, the whole tensor else."""
    units = 1 if value.ndim <= 1 else value.shape[0]
    w_rows = value.detach().reshape(units, -1).tolist()
    g_rows = grad.detach().reshape(units, -1).tolist()
    out = []
    for w, g in zip(w_rows, g_rows):
        w_norm = max(math.sqrt(math.fsum(v * v for v in w)), eps)
        g_norm = math.sqrt(math.fsum(v * v for v in g))
        scale = lam * w_norm / g_norm if g_norm / w_norm > lam else 1.0
        out.append([v * scale for v in g])
    return torch.tensor(out, dtype=torch.float64).reshape(grad.shape)


def test_agc_clips_each_unit_as_the_loop_oracle_and_leaves_the_head():
    model = _model("nf").double()  # scaled-WS convs with biases (0 at init) and gains
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    F.cross_entropy(model(x), torch.tensor([0, 1, 2, 0, 1])).backward()
    for p in model.parameters():  # gradients large enough that some units clip, some not
        p.grad.mul_(torch.logspace(-5, 1, p.grad.numel(), dtype=p.dtype).reshape(p.shape))
    before = {n: (p.detach().clone(), p.grad.clone()) for n, p in model.named_parameters()}
    agc = AdaptiveGradClipping(model, 0.05, eps=1e-3)
    assert "head.weight" not in agc.names and "conv1.gain" in agc.names
    agc.apply()
    clipped = kept = 0
    for name, p in model.named_parameters():
        value, grad = before[name]
        if name.startswith("head."):
            assert torch.equal(p.grad, grad), name
            continue
        expected = _agc_oracle(value, grad, 0.05, 1e-3)
        torch.testing.assert_close(p.grad, expected, rtol=1e-12, atol=1e-15)
        same = torch.isclose(expected, grad, rtol=0, atol=0).reshape(expected.shape[0], -1).all(1)
        kept, clipped = kept + int(same.sum()), clipped + int((~same).sum())
    assert clipped and kept  # both branches exercised
    assert before["conv1.bias"][1].norm() > 0.05 * 1e-3  # a zero parameter: norm floored at ε
    assert model.conv1.bias.grad.norm().item() == pytest.approx(0.05 * 1e-3, rel=1e-10)


def test_agc_in_the_training_loop_equals_clipping_by_hand():
    """`TrainConfig(agc=λ)` = backward, `AdaptiveGradClipping.apply`, SGD step, step by step."""
    from normtheory.train import TrainConfig, train

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 2, 6, 6, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    data = torch.utils.data.TensorDataset(x, y)
    config = TrainConfig(lr=2.0, momentum=0.9, batch_size=16, steps=6, seed=3, agc=0.02)
    model = _model("nf")
    by_hand = copy.deepcopy(model)
    train(model, data, None, config)
    opt = torch.optim.SGD(by_hand.parameters(), lr=2.0, momentum=0.9)
    agc = AdaptiveGradClipping(by_hand, 0.02)
    order = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    idx = torch.cat([torch.randperm(64, generator=order) for _ in range(2)])
    for step in range(6):
        batch = idx[16 * step : 16 * step + 16]
        opt.zero_grad()
        F.cross_entropy(by_hand(x[batch]), y[batch]).backward()
        agc.apply()
        opt.step()
    for (name, a), b in zip(model.named_parameters(), by_hand.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


def test_agc_refuses_bad_settings():
    with pytest.raises(ValueError, match="clipping"):
        AdaptiveGradClipping(_model(), 0.0)
    with pytest.raises(ValueError, match="exclude"):
        AdaptiveGradClipping(_model(), 0.01, exclude=("fc9",))
