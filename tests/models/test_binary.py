"""Binary convs (`normtheory.models.binary`): sign activations and α ⊙ sign(W) weights with
straight-through gradients, against float64 loop oracles; binary nets (`binary=True`) use them
where the docstrings say."""

import math

import pytest
import torch
import torch.nn.functional as F
from model_cases import build
from torch import nn

from normtheory.models.binary import BinaryConv1d, BinaryConv2d, binarize_weight, sign_ste
from normtheory.norms import RELU_GAMMA, scaled_standardize_weight

TOL = dict(rtol=1e-12, atol=1e-12)


def _sign(v: float) -> float:
    return 1.0 if v >= 0 else -1.0


def _binary_oracle(weight: torch.Tensor) -> torch.Tensor:
    """Row by row: mean |w| times sign(w), on Python floats."""
    rows = weight.detach().reshape(weight.shape[0], -1).tolist()
    out = [[math.fsum(abs(w) for w in row) / len(row) * _sign(w) for w in row] for row in rows]
    return torch.tensor(out, dtype=torch.float64).reshape(weight.shape)


def test_sign_ste_values_and_hard_tanh_gradient():
    x = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.5], dtype=torch.float64)
    x.requires_grad_()
    y = sign_ste(x)
    assert y.tolist() == [_sign(v) for v in x.tolist()]  # never 0: sign(0) = +1
    upstream = torch.arange(1.0, 8.0, dtype=torch.float64)
    y.backward(upstream)
    expected = [u if abs(v) <= 1 else 0.0 for u, v in zip(upstream.tolist(), x.tolist())]
    assert x.grad.tolist() == expected


def test_binarize_weight_is_mean_abs_times_sign_with_straight_through_gradient():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64).requires_grad_()
    b = binarize_weight(w)
    torch.testing.assert_close(b, _binary_oracle(w), **TOL)
    upstream = torch.randn(w.shape, generator=gen, dtype=torch.float64)
    b.backward(upstream)
    alpha = w.detach().abs().reshape(4, -1).mean(dim=1).reshape(4, 1, 1, 1)
    torch.testing.assert_close(w.grad, alpha * upstream, **TOL)  # α constant, sign identity


@pytest.mark.parametrize(("cls", "x_shape", "op"), [
    (BinaryConv2d, (2, 3, 6, 5), lambda x, w, b: F.conv2d(x, w, b, padding=1, stride=2)),
    (BinaryConv1d, (2, 3, 9), lambda x, w, b: F.conv1d(x, w, b, padding=1, stride=2)),
])  # fmt: skip
@pytest.mark.parametrize("latent", ["plain", "scaled_ws"])
def test_binary_conv_is_a_conv_of_signs_with_binary_weights(cls, x_shape, op, latent):
    torch.manual_seed(0)
    conv = cls(3, 4, 3, padding=1, stride=2, latent=latent, gamma=1.0).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(x_shape, generator=gen, dtype=torch.float64)
    signs = torch.tensor([_sign(v) for v in x.flatten().tolist()], dtype=torch.float64)
    latent_w = conv.weight
    if latent == "scaled_ws":
        latent_w = scaled_standardize_weight(conv.weight, conv.gain, 1.0, conv.ws_eps)
    expected = op(signs.reshape(x_shape), _binary_oracle(latent_w), conv.bias)
    torch.testing.assert_close(conv(x), expected, **TOL)
    conv(x).square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_binary_nets_binarize_the_hidden_convs_only_and_have_no_relu():
    conv = build("convnet", norm="batch", binary=True)
    assert isinstance(conv.conv1, nn.Conv2d) and not isinstance(conv.conv1, BinaryConv2d)
    assert isinstance(conv.conv2, BinaryConv2d) and isinstance(conv.conv3, BinaryConv2d)
    assert not any(isinstance(m, nn.ReLU) for m in conv.modules())
    res = build("resnet", norm="batch", binary=True)
    binary = {n for n, m in res.named_modules() if isinstance(m, BinaryConv2d)}
    assert binary == {f"stage{s}.block1.conv{i}" for s in (1, 2, 3) for i in (1, 2)}
    assert not isinstance(res.stage2.block1.shortcut.conv, BinaryConv2d)
    assert not any(isinstance(m, nn.ReLU) for m in res.modules())
    nf = build("resnet", norm="nf", binary=True)
    assert nf.stage1.block1.conv1.latent == "scaled_ws" and nf.stage1.block1.conv1.gamma == 1.0
    assert not any(isinstance(m, nn.ReLU) for m in nf.modules())
    real_nf = build("resnet", norm="nf")
    assert real_nf.stage1.block1.conv1.gamma == pytest.approx(RELU_GAMMA)
    with pytest.raises(ValueError, match="not mlp"):
        build("mlp", (16,), "batch", binary=True)


def test_binary_net_trains_a_step_with_finite_gradients():
    for norm in ("batch", "nf", "none"):
        model = build("resnet", norm=norm, binary=True)
        out = model(torch.randn(8, 1, 8, 8))
        F.cross_entropy(out, torch.arange(8) % 3).backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), norm
