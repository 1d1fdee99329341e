"""Binary convolutions: sign activations and binary weights, trained with straight-through
estimators.

A binary conv (Hubara et al. 2016, "Binarized Neural Networks"; Rastegari et al. 2016,
XNOR-Net, for the per-channel scale) computes ``conv(sign(x), α ⊙ sign(W))``:

- activations: ``sign(x)`` = +1 for x ≥ 0, −1 otherwise (never 0); backward, the
  straight-through estimator of the hard tanh, ∂sign(x)/∂x := 1 where |x| ≤ 1, else 0
  (`sign_ste`);
- weights: ``α_o · sign(W_o)`` with α_o = mean_j |W_oj| per output channel o (XNOR-Net's
  optimal scale), backward the identity for sign(W) (straight through, as in Bi-Real Net and
  ReActNet) with α_o treated as a constant (`binarize_weight`).

The real-valued *latent* weight W may first be standardized: ``"ws"`` (Qiao et al. 2019) or
``"scaled_ws"`` (Brock et al. 2021, with a learnable gain and the activation gain γ, which is 1
for a ±1 input), as the BN-free binary nets of Chen et al. 2021 ("BNN − BN = ?") do; the binary
weight is then α ⊙ sign(Ŵ) with α = mean |Ŵ|, so a scaled-WS binary layer keeps the scale of
its gain: ‖α_o sign(Ŵ_o)‖² = N α_o² ≈ (2/π) g_o² γ² for Gaussian-like rows.
"""

import torch
from torch import Tensor, nn

from normtheory.norms.scaled_ws import scaled_standardize_weight
from normtheory.norms.standardization import standardize_weight

LATENT = ("plain", "ws", "scaled_ws")


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def sign_ste(x: Tensor) -> Tensor:
    """sign(x) ∈ {−1, +1} (0 maps to +1); backward 1{|x| ≤ 1} (hard-tanh STE)."""
    return _SignSTE.apply(x)


def binarize_weight(weight: Tensor) -> Tensor:
    """α_o · sign(W_o) per output row o, α_o = mean |W_o| (a constant in the backward pass);
    backward the identity for sign (straight through): ∂/∂W = α_o · upstream gradient."""
    flat = weight.reshape(weight.shape[0], -1)  # (C_out, N)
    alpha = flat.abs().mean(dim=1, keepdim=True).detach()  # (C_out, 1)
    sign = torch.where(flat >= 0, torch.ones_like(flat), -torch.ones_like(flat))
    straight = flat + (sign - flat).detach()  # value sign(W), gradient identity
    return (alpha * straight).reshape(weight.shape)


class _Binary:
    """Latent-weight transform + binarization shared by the 1-D and 2-D binary convs: their
    constructor (the conv's arguments plus `latent`, `gamma`, `ws_eps`) and their forward."""

    def __init__(self, *args, latent="plain", gamma=1.0, ws_eps=1e-4, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_binary(latent, gamma, ws_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(sign_ste(x), self.binary_weight(), self.bias)

    def _init_binary(self, latent: str, gamma: float, ws_eps: float) -> None:
        if latent not in LATENT:
            raise ValueError(f"unknown latent {latent!r}; valid: {', '.join(LATENT)}")
        self.latent, self.gamma, self.ws_eps = latent, float(gamma), float(ws_eps)
        if latent == "scaled_ws":
            out = self.weight.shape[0]
            self.gain = nn.Parameter(torch.ones(out, dtype=self.weight.dtype))

    def latent_weight(self) -> Tensor:
        """The real-valued weight before binarization (raw, WS or scaled WS)."""
        if self.latent == "ws":
            return standardize_weight(self.weight, self.ws_eps)
        if self.latent == "scaled_ws":
            return scaled_standardize_weight(self.weight, self.gain, self.gamma, self.ws_eps)
        return self.weight

    def binary_weight(self) -> Tensor:
        return binarize_weight(self.latent_weight())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, binary, latent={self.latent}"


class BinaryConv1d(_Binary, nn.Conv1d):
    """`nn.Conv1d` on sign(x) with α ⊙ sign(latent W) (module docstring); keywords `latent`
    (``plain``, ``ws``, ``scaled_ws``), `gamma` and `ws_eps` for the latent standardization."""


class BinaryConv2d(_Binary, nn.Conv2d):
    """`nn.Conv2d` on sign(x) with α ⊙ sign(latent W) (module docstring); keywords `latent`
    (``plain``, ``ws``, ``scaled_ws``), `gamma` and `ws_eps` for the latent standardization."""
