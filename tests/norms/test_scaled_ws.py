"""Scaled Weight Standardization (Brock et al. 2021) against a float64 loop oracle, the ReLU gain
against numerical integration, and the variance it preserves in a deep ReLU stack."""

import math

import pytest
import torch
import torch.nn.functional as F

from normtheory.norms import (
    RELU_GAMMA,
    ScaledWSConv1d,
    ScaledWSConv2d,
    ScaledWSLinear,
    WSConv2d,
    scaled_standardize_weight,
)

TOL = dict(rtol=1e-10, atol=1e-12)


def _oracle(weight: torch.Tensor, gain, gamma: float, eps: float) -> torch.Tensor:
    """Row by row on Python floats: g_i · γ · (w − mean) / √(N · var_biased + ε)."""
    rows = weight.detach().reshape(weight.shape[0], -1).tolist()
    gains = [1.0] * len(rows) if gain is None else gain.detach().tolist()
    out = []
    for row, g in zip(rows, gains):
        n = len(row)
        mean = math.fsum(row) / n
        var = math.fsum((w - mean) ** 2 for w in row) / n
        out.append([g * gamma * (w - mean) / math.sqrt(n * var + eps) for w in row])
    return torch.tensor(out, dtype=torch.float64).reshape(weight.shape)


def _weight(shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return 0.2 * torch.randn(shape, generator=gen, dtype=torch.float64) + 0.05


@pytest.mark.parametrize("shape", [(6, 3, 3, 3), (4, 7), (5, 2, 3)])
@pytest.mark.parametrize(("gamma", "eps"), [(1.0, 0.0), (RELU_GAMMA, 1e-4), (0.5, 1e-2)])
def test_scaled_standardize_weight_matches_the_loop_oracle(shape, gamma, eps):
    w = _weight(shape)
    gain = torch.linspace(0.5, 2.0, shape[0], dtype=torch.float64)
    torch.testing.assert_close(
        scaled_standardize_weight(w, gain, gamma, eps), _oracle(w, gain, gamma, eps), **TOL
    )
    torch.testing.assert_close(
        scaled_standardize_weight(w, None, gamma, eps), _oracle(w, None, gamma, eps), **TOL
    )


def test_rows_have_mean_zero_and_squared_norm_gain_squared_gamma_squared():
    """With ε = 0: ‖Ŵ_i‖² = g_i² γ² exactly and Σ_j Ŵ_ij = 0 (no mean shift)."""
    w = _weight((8, 4, 3, 3), seed=1)
    gain = torch.linspace(0.3, 1.7, 8, dtype=torch.float64)
    rows = scaled_standardize_weight(w, gain, RELU_GAMMA, 0.0).reshape(8, -1)
    torch.testing.assert_close(rows.sum(dim=1), torch.zeros(8, dtype=torch.float64), **TOL)
    torch.testing.assert_close(rows.square().sum(dim=1), (gain * RELU_GAMMA) ** 2, **TOL)


def test_relu_gamma_matches_the_variance_of_relu_of_a_gaussian():
    """γ² · Var(relu(z)) = 1 for z ~ N(0, 1), the moments by the trapezoid rule on [0, 12]."""
    n, top = 200_000, 12.0
    z = torch.linspace(0.0, top, n + 1, dtype=torch.float64)
    density = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    m1 = torch.trapezoid(z * density, z).item()
    m2 = torch.trapezoid(z**2 * density, z).item()
    assert RELU_GAMMA**2 * (m2 - m1**2) == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize(
    ("cls", "kw", "x_shape", "op"),
    [
        (ScaledWSConv2d, dict(in_channels=3, out_channels=5, kernel_size=3, padding=1, stride=2),
         (2, 3, 7, 6), lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1)),
        (ScaledWSConv1d, dict(in_channels=4, out_channels=3, kernel_size=3, bias=False),
         (2, 4, 9), lambda x, w, b: F.conv1d(x, w, b)),
        (ScaledWSLinear, dict(in_features=7, out_features=4), (3, 7), F.linear),
    ],
)  # fmt: skip
def test_layers_apply_the_oracle_weight(cls, kw, x_shape, op):
    torch.manual_seed(0)
    layer = cls(**kw, gamma=RELU_GAMMA, ws_eps=1e-3).double()
    with torch.no_grad():
        layer.gain.copy_(torch.linspace(0.5, 1.5, layer.gain.numel()))
    x = _weight(x_shape, seed=2)
    expected = op(x, _oracle(layer.weight, layer.gain, RELU_GAMMA, 1e-3), layer.bias)
    torch.testing.assert_close(layer(x), expected, **TOL)
    layer(x).square().sum().backward()
    assert layer.weight.grad.abs().sum() > 0 and layer.gain.grad.abs().sum() > 0


def test_a_scaled_ws_layer_is_a_ws_layer_with_a_gain_of_ones():
    layer = ScaledWSConv2d(2, 3, 3, gamma=2.0)
    assert isinstance(layer, WSConv2d) and torch.equal(layer.gain.detach(), torch.ones(3))
    with pytest.raises(ValueError, match="gamma"):
        ScaledWSConv2d(2, 3, 3, gamma=0.0)


def test_deep_relu_stack_keeps_unit_variance():
    """Signal propagation (the point of the construction): 20 layers of ReLU → scaled-WS linear
    (γ_ReLU) on unit Gaussian inputs keep the pre-activation variance near 1, where plain
    He-initialized layers without the mean removal would drift. A wrong γ (e.g. 1) shrinks it by
    (1 − 1/π)/2 per layer, to 1e-10 after 20."""
    torch.manual_seed(0)
    x = torch.randn(4096, 256, dtype=torch.float64)
    for _ in range(20):
        layer = ScaledWSLinear(256, 256, bias=False, gamma=RELU_GAMMA, ws_eps=0.0).double()
        x = layer(torch.relu(x))
    assert x.var().item() == pytest.approx(1.0, rel=0.25)
    assert x.mean(dim=0).abs().mean().item() < 0.3
