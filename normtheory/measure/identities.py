"""Exact identities of normalization layers, both sides computed: BN-GRAD, BN-HESS, WS-GRAD,
SI-ORTH (see CLAIMS.md).

Each check takes the left-hand side from autograd through the layer under test and the
right-hand side from the paper's closed form evaluated on an explicit float64 forward with
eps = 0 (`bn_forward_exact`, `ws_forward_exact`), the oracle; without a layer under test the
explicit forward is differentiated on both sides. Inputs are detached and cast to float64;
loss callables must accept float64 tensors. `run_exact_checks` builds the small random problems
of ``normtheory verify``, whose left-hand sides run through the library's own layers. Nothing
here touches ``.grad`` or the global RNG.

The checks live by claim family: BN-GRAD and BN-HESS in `normtheory.measure.identities_bn`
(with the notation), WS-GRAD in `normtheory.measure.identities_ws`, SI-ORTH in
`normtheory.measure.identities_si`; this module gathers them.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from normtheory.measure.identities_bn import (
    BNHessTerms,
    bn_forward_exact,
    bn_hess_terms,
    check_bn_grad,
    check_bn_hess,
)
from normtheory.measure.identities_si import check_si_orth
from normtheory.measure.identities_ws import check_ws_grad, ws_forward_exact
from normtheory.measure.identity_check import IdentityCheck
from normtheory.norms import WSConv2d, WSLinear, build_norm

__all__ = [
    "BNHessTerms",
    "IdentityCheck",
    "IdentityShapes",
    "bn_forward_exact",
    "bn_hess_terms",
    "check_bn_grad",
    "check_bn_hess",
    "check_si_orth",
    "check_ws_grad",
    "run_exact_checks",
    "ws_forward_exact",
]


def _library_norm(name: str, gamma: Tensor, beta: Tensor, **kw) -> nn.Module:
    """The registry's norm `name` over len(gamma) channels, ε = 0, train mode, float64, with
    the affine parameters gamma, beta."""
    layer = build_norm(name, len(gamma), eps=0.0, **kw).double().train()
    with torch.no_grad():
        layer.weight.copy_(gamma)
        layer.bias.copy_(beta)
    return layer


def _on_columns(layer: nn.Module, shape: tuple[int, ...]) -> Callable[[Tensor], Tensor]:
    """`layer` on an (N, C, *S) input given as its (m, C) channel columns, m = N · prod(S)."""
    n, c, *spatial = shape

    def forward(y: Tensor) -> Tensor:  # (m, C) -> (m, C)
        return layer(y.reshape(n, *spatial, c).movedim(-1, 1)).movedim(1, -1).reshape(-1, c)

    return forward


def _ce_head(weight: Tensor, targets: Tensor) -> Callable[[Tensor], Tensor]:
    """z (m, C) -> cross-entropy of tanh(z) W^T against `targets` (m,): a nonlinear head."""
    return lambda z: F.cross_entropy(torch.tanh(z) @ weight.T, targets)


@dataclass(frozen=True)
class IdentityShapes:
    """The sizes of `run_exact_checks`' problems (the defaults: the small ones of ``verify``).

    Attributes:
        rows, features, channels: x is (rows, features); the BN sees x W1ᵀ, (rows, channels).
        grid: (N, C, H, W) of the conv-shaped BN input (C must equal `channels`).
        images: (N, C_in, H, W) of the `WSConv2d` input; `conv_out` its output channels.
        gn_channels, gn_groups: the GroupNorm of the SI-ORTH contrast.
    """

    rows: int = 16
    features: int = 5
    channels: int = 4
    grid: tuple[int, int, int, int] = (2, 4, 3, 3)
    images: tuple[int, int, int, int] = (2, 3, 6, 6)
    conv_out: int = 4
    gn_channels: int = 8
    gn_groups: int = 2

    def __post_init__(self):
        if self.grid[1] != self.channels:
            raise ValueError(f"grid has {self.grid[1]} channels, the BN {self.channels}")


def run_exact_checks(
    seed: int = 0, shapes: IdentityShapes = IdentityShapes()
) -> list[IdentityCheck]:
    """BN-GRAD, BN-HESS, WS-GRAD and SI-ORTH on random float64 problems (milliseconds at the
    default `shapes`), the left-hand sides through the library's layers, the right-hand sides on
    the oracle. The shapes below are the defaults; `shapes` scales them (e.g. to a ResNet-20's
    first layer on CIFAR-10 batches).

    - BN-GRAD, BN-HESS: the library's BN (``build_norm("batch", 4, eps=0.0)``, train mode,
      random gamma, beta) on x W1^T (16, 4), and on a conv-shaped (2, 4, 3, 3) input (m = 18
      per channel), each followed by tanh -> linear -> cross-entropy, so H != 0 and
      <g, y_hat> != 0.
    - WS-GRAD: the library's `WSConv2d` (4, 3, 3, 3) under a softplus-squared loss and its
      `WSLinear` (4, 5) under the cross-entropy head, both with ``ws_eps=0``; the raw weight is
      swapped in with `torch.func.functional_call`.
    - SI-ORTH: W1 feeding that BN (per-row invariance, checked for the whole tensor), and an
      (8, 5) weight feeding the library's GroupNorm (2 groups of 4 channels, ε = 0), which is
      invariant to a common scale of the whole tensor only.

    Uses its own generator and restores the global RNG state after building the layers.
    """
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    m, d, channels, classes = shapes.rows, shapes.features, shapes.channels, 3
    x, w1, w2 = randn(m, d), randn(channels, d), randn(classes, channels)
    gamma, beta = 1 + 0.5 * randn(channels), 0.5 * randn(channels)
    targets = torch.randint(classes, (m,), generator=gen)
    grid = shapes.grid  # a conv layer's BN input: N·H·W values per channel
    per_channel = grid[0] * grid[2] * grid[3]
    y_grid = 2.0 * randn(per_channel, channels) + randn(channels)  # (N·H·W, C) columns
    targets_grid = torch.randint(classes, (len(y_grid),), generator=gen)
    c_in, c_out = shapes.images[1], shapes.conv_out
    images, conv_w = randn(*shapes.images), randn(c_out, c_in, 3, 3)
    lin_w = randn(channels, d)
    gn_w, gn_head = randn(shapes.gn_channels, d), randn(classes, shapes.gn_channels)
    gn_gamma, gn_beta = 1 + 0.5 * randn(shapes.gn_channels), 0.5 * randn(shapes.gn_channels)
    with torch.random.fork_rng(devices=[]):  # the conv and linear constructors draw weights
        conv = WSConv2d(c_in, c_out, 3, bias=False, ws_eps=0.0).double()
        linear = WSLinear(d, channels, bias=False, ws_eps=0.0).double()
    bn = _library_norm("batch", gamma, beta)
    gn = _library_norm("group", gn_gamma, gn_beta, groups=shapes.gn_groups)
    head, head_grid = _ce_head(w2, targets), _ce_head(w2, targets_grid)
    bn_grid = _on_columns(bn, grid)

    def conv_loss(w_hat: Tensor) -> Tensor:
        return F.softplus(F.conv2d(images, w_hat)).square().mean()

    def through_conv(w: Tensor) -> Tensor:
        return F.softplus(functional_call(conv, {"weight": w}, (images,))).square().mean()

    def through_linear(w: Tensor) -> Tensor:
        return head(functional_call(linear, {"weight": w}, (x,)))

    def through_gn(w: Tensor) -> Tensor:
        return F.cross_entropy(torch.tanh(gn(x @ w.T)) @ gn_head.T, targets)

    y = x @ w1.T  # (m, C)
    gn_size = shapes.gn_channels // gn.groups
    parts = {
        f"library BN, ({m}, {channels}) input": [
            check_bn_grad(y, gamma, beta, head, bn=bn),
            check_bn_hess(y, gamma, beta, head, bn=bn),
        ],
        f"library BN, {tuple(grid)} input": [
            check_bn_grad(y_grid, gamma, beta, head_grid, bn=bn_grid),
            check_bn_hess(y_grid, gamma, beta, head_grid, bn=bn_grid),
        ],
        "WSConv2d": [check_ws_grad(conv_w, conv_loss, loss_of_weight=through_conv)],
        "WSLinear": [
            check_ws_grad(lin_w, lambda w_hat: head(x @ w_hat.T), loss_of_weight=through_linear)
        ],
        "W1 feeding the BN": check_si_orth(w1, lambda w: head(bn(x @ w.T))),
        f"W feeding GroupNorm ({gn.groups} groups of {gn_size})": check_si_orth(gn_w, through_gn),
    }
    return [replace(c, detail=f"{label}: {c.detail}") for label, cs in parts.items() for c in cs]
