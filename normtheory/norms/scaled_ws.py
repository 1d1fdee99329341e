"""Scaled Weight Standardization: the weight layers of normalizer-free networks.

Brock, De & Smith 2021 ("Characterizing signal propagation to close the performance gap in
unnormalized ResNets", ICLR 2021, Sec. 4.2; kept in Brock et al. 2021, "High-Performance
Large-Scale Image Recognition Without Normalization", NFNets) standardize each output row i of
a weight over its fan-in N and scale it so that the layer preserves the variance of its input:

    Ŵ_i = g_i · γ · (W_i − μ_i) / (σ_i √N),    σ_i² the biased variance of row i,

with g_i a learnable gain per output channel (initialized to 1), γ the gain of the activation
that feeds the layer and N the fan-in (in-channels × kernel size). Each row of Ŵ has mean 0
and squared norm ‖Ŵ_i‖² = g_i² γ² N σ_i² / (σ_i² N) = g_i² γ², so for an input with i.i.d.
entries of variance v the output has variance g_i² γ² v, whatever the input's mean (the zero row
mean removes it: no mean shift). For ReLU applied to a unit Gaussian, Var(relu(z)) =
(1 − 1/π)/2, so γ_ReLU = √2 / √(1 − 1/π) ≈ 1.7139 makes the layer map the ReLU output back to
unit variance (`RELU_GAMMA`); γ = 1 for a layer fed by the data or by a sign (±1) activation.
The ε of the implementation is added to N σ_i² (``rsqrt(max(N σ², ε))`` in the authors' code;
here ``1 / √(N σ² + ε)``, the form `standardize_weight` uses).
"""

import math

import torch
from torch import Tensor, nn

from normtheory.norms.batch import _check_eps
from normtheory.norms.standardization import WSConv1d, WSConv2d, WSLinear

RELU_GAMMA = math.sqrt(2.0 / (1.0 - 1.0 / math.pi))  # 1.7139588594…


def scaled_standardize_weight(
    weight: Tensor, gain: Tensor | None = None, gamma: float = 1.0, eps: float = 1e-4
) -> Tensor:
    """Scaled Weight Standardization (see the module docstring):
    ``g_i · γ · (W_i − μ_i) / √(N σ_i² + ε)`` per output row i (dim 0) over its fan-in N.

    Args:
        weight: (C_out, C_in, *kernel) or (out_features, in_features).
        gain: (C_out,) learnable gains g, or None for g = 1.
        gamma: the activation's gain γ.
        eps: added to N σ_i² inside the square root.

    Returns:
        The scaled standardized weight, same shape as `weight`; differentiable in `weight`
        and `gain`.
    """
    if weight.ndim < 2:
        raise ValueError(f"weight must have ndim >= 2 (out, fan-in...), got {tuple(weight.shape)}")
    eps = _check_eps(eps)
    flat = weight.reshape(weight.shape[0], -1)  # (C_out, N)
    fan_in = flat.shape[1]
    var, mean = torch.var_mean(flat, dim=1, correction=0, keepdim=True)  # (C_out, 1)
    scale = gamma / torch.sqrt(var * fan_in + eps)  # (C_out, 1)
    if gain is not None:
        scale = scale * gain.reshape(-1, 1)
    return ((flat - mean) * scale).reshape(weight.shape)


class _ScaledWS:
    """The parameters and the weight of a scaled-WS layer (mixed into the WS layer classes, so
    the scale-invariance tools treat it as a weight-standardized layer: the raw weight is
    per-row scale invariant; the gain carries the scale). The WS layer's forward applies
    `standardized_weight`, which this mixin overrides; the constructor takes the WS layer's
    arguments plus `gamma`, with `ws_eps` defaulting to 1e-4."""

    def __init__(self, *args, gamma: float = 1.0, ws_eps: float = 1e-4, **kwargs) -> None:
        super().__init__(*args, ws_eps=ws_eps, **kwargs)
        self._init_scaled(gamma, ws_eps)

    def _init_scaled(self, gamma: float, eps: float) -> None:
        if not (isinstance(gamma, int | float) and math.isfinite(gamma) and gamma > 0):
            raise ValueError(f"gamma must be a finite float > 0, got {gamma!r}")
        self.gamma, self.ws_eps = float(gamma), _check_eps(eps)
        self.gain = nn.Parameter(torch.ones(self.weight.shape[0], dtype=self.weight.dtype,
                                            device=self.weight.device))  # fmt: skip

    def standardized_weight(self) -> Tensor:
        """Ŵ = g · γ · (W − μ) / √(N σ² + ε), the weight the layer applies."""
        return scaled_standardize_weight(self.weight, self.gain, self.gamma, self.ws_eps)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma:.4g}"


class ScaledWSConv1d(_ScaledWS, WSConv1d):
    """`nn.Conv1d` with scaled weight standardization (keywords `gamma`, `ws_eps`; a learnable
    per-channel ``gain``, 1 at init). `.weight` stays the raw parameter."""


class ScaledWSConv2d(_ScaledWS, WSConv2d):
    """`nn.Conv2d` with scaled weight standardization (keywords `gamma`, `ws_eps`; a learnable
    per-channel ``gain``, 1 at init). `.weight` stays the raw parameter."""


class ScaledWSLinear(_ScaledWS, WSLinear):
    """`nn.Linear` with scaled weight standardization (keywords `gamma`, `ws_eps`; a learnable
    per-unit ``gain``, 1 at init). `.weight` stays the raw parameter."""
