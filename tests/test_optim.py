"""Weight rescaling (WRS) and weight-decay parameter groups."""

import copy

import pytest
import torch
import torch.nn.functional as F

from normtheory.measure.span import InputSpan, orthogonal_weight_norm
from normtheory.models import build_model
from normtheory.optim import WeightRescaling, build_param_groups

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
