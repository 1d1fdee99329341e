"""Weight Standardization against a float64 loop oracle, and the WS layers against F.conv/linear."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normtheory.norms import WSConv1d, WSConv2d, WSLinear, standardize_weight

TOL = dict(rtol=1e-10, atol=1e-10)
WEIGHT_SHAPES = [(8, 3, 3, 3), (5, 7), (4, 2, 5)]


def _oracle(weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, list[float]]:
    """Row-by-row (W - mean) / sqrt(var_biased + eps) on Python floats; also the variances."""
    rows, variances = [], []
    for row in weight.detach().reshape(weight.shape[0], -1).tolist():
        mean = math.fsum(row) / len(row)
        var = math.fsum((w - mean) ** 2 for w in row) / len(row)
        rows.append([(w - mean) / math.sqrt(var + eps) for w in row])
        variances.append(var)
    return torch.tensor(rows, dtype=torch.float64).reshape(weight.shape), variances


def _weight(shape, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64) + 0.03


@pytest.mark.parametrize("shape", WEIGHT_SHAPES)
@pytest.mark.parametrize("eps", [1e-5, 1e-3, 0.0])
def test_standardize_weight_matches_oracle(shape, eps):
    w = _weight(shape)
    expected, variances = _oracle(w, eps)
    got = standardize_weight(w, eps)
    torch.testing.assert_close(got, expected, **TOL)
    rows = got.reshape(shape[0], -1)
    torch.testing.assert_close(rows.mean(dim=1), torch.zeros(shape[0], dtype=w.dtype), **TOL)
    # biased variance of a row is sigma^2 / (sigma^2 + eps) = 1 / (1 + eps / sigma^2)
    expected_var = torch.tensor([1 / (1 + eps / v) for v in variances], dtype=w.dtype)
    torch.testing.assert_close(rows.var(dim=1, unbiased=False), expected_var, **TOL)


def test_standardize_weight_is_invariant_to_row_affine_maps_without_eps():
    w = _weight((6, 4, 3))
    scale = torch.rand(6, 1, 1, dtype=w.dtype) + 0.5
    shift = torch.randn(6, 1, 1, dtype=w.dtype)
    torch.testing.assert_close(
        standardize_weight(scale * w + shift, 0.0), standardize_weight(w, 0.0), **TOL
    )


@pytest.mark.parametrize("bad", [torch.randn(5), torch.tensor(1.0)])
def test_standardize_weight_needs_a_fan_in(bad):
    with pytest.raises(ValueError, match=r"ndim >= 2"):
        standardize_weight(bad)


def _make(cls, seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return cls(**kw).double()


def test_wsconv2d_is_conv2d_with_standardized_weight():
    conv = _make(WSConv2d, in_channels=3, out_channels=5, kernel_size=3, padding=1, stride=2)
    x = _weight((2, 3, 7, 6), seed=1)
    expected = F.conv2d(x, _oracle(conv.weight, 1e-5)[0], conv.bias, stride=2, padding=1)
    torch.testing.assert_close(conv(x), expected, **TOL)


def test_wsconv1d_is_conv1d_with_standardized_weight():
    conv = _make(WSConv1d, in_channels=4, out_channels=3, kernel_size=3, bias=False, ws_eps=1e-2)
    x = _weight((2, 4, 9), seed=2)
    torch.testing.assert_close(conv(x), F.conv1d(x, _oracle(conv.weight, 1e-2)[0]), **TOL)


def test_wslinear_is_linear_with_standardized_weight():
    lin = _make(WSLinear, in_features=7, out_features=4)
    x = _weight((3, 7), seed=3)
    expected = F.linear(x, _oracle(lin.weight, 1e-5)[0], lin.bias)
    torch.testing.assert_close(lin(x), expected, **TOL)


@pytest.mark.parametrize(
    "cls, base, kw, x_shape",
    [
        (WSConv2d, nn.Conv2d, dict(in_channels=2, out_channels=3, kernel_size=3), (2, 2, 5, 5)),
        (WSConv1d, nn.Conv1d, dict(in_channels=2, out_channels=3, kernel_size=3), (2, 2, 5)),
        (WSLinear, nn.Linear, dict(in_features=4, out_features=3), (2, 4)),
    ],
)
def test_raw_weight_stays_the_learnable_parameter(cls, base, kw, x_shape):
    layer = _make(cls, **kw)
    assert isinstance(layer, base) and isinstance(layer.weight, nn.Parameter)
    before = layer.weight.detach().clone()
    layer(_weight(x_shape)).square().sum().backward()
    assert torch.equal(layer.weight.detach(), before)  # forward never overwrites it
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    w = layer.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda w: standardize_weight(w, layer.ws_eps), (w,))


@pytest.mark.parametrize("cls", [WSConv1d, WSConv2d])
@pytest.mark.parametrize("bad", [-1e-5, float("inf"), "x"])
def test_bad_ws_eps_raises(cls, bad):
    with pytest.raises(ValueError, match="eps"):
        cls(2, 3, 3, ws_eps=bad)
    with pytest.raises(ValueError, match="eps"):
        WSLinear(2, 3, ws_eps=bad)
