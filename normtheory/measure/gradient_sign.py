"""IC-SIGN: how one-signed the per-sample weight-gradient rows of a layer are (CLAIMS.md).

With non-negative inputs (ReLU output and no norm after it) every per-sample weight-gradient
row δ_o x has one sign; `same_sign_fraction` measures how close a layer's inputs come to that.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from normtheory.measure.span import InputSpan


def same_sign_fraction(layer: nn.Module, inputs: Tensor) -> float:
    """IC-SIGN: how one-signed the per-sample weight-gradient rows of `layer` are.

    For y = W x the per-sample gradient is ∇_W ℓ = δ xᵀ, so its row o is δ_o x: one common sign
    flip of the input vector. (A conv's per-sample gradient is the sum over output positions p of
    δ_{o,p} x_pᵀ; its rows per position are measured.) For every input vector x (a row of the
    layer's input, or an im2col patch) this takes the fraction of its non-zero entries that
    share the majority sign, max(#x > 0, #x < 0) / #x ≠ 0, and averages over vectors. It is 1.0
    when the inputs are non-negative (ReLU output with no norm after it), so every entry of a
    gradient row moves the same way, and close to 0.5 for zero-mean inputs of many entries
    (Chen et al. 2019, the IC layer). Vectors with no non-zero entry are left out (NaN if all).

    Args:
        layer: an `nn.Linear`, `nn.Conv1d` or `nn.Conv2d` (only its geometry is used).
        inputs: a batch of the layer's inputs.
    """
    span = InputSpan(layer)  # checks the layer type and the input shape
    x = span._batched(inputs.detach())
    pos, neg = _patch_counts(layer, span, x > 0), _patch_counts(layer, span, x < 0)
    nonzero = pos + neg
    keep = nonzero > 0
    if not keep.any():
        return math.nan
    return float((torch.maximum(pos, neg)[keep].double() / nonzero[keep]).mean())


def _patch_counts(layer: nn.Module, span: InputSpan, mask: Tensor) -> Tensor:
    """How many entries of each input vector (each im2col patch for a conv) `mask` marks: a
    convolution of the indicator with an all-ones kernel of the layer's geometry."""
    ind = mask.to(torch.float32)
    if span.kind == "linear":
        return ind.sum(-1)
    ones = torch.ones(
        span.groups, span.in_channels // span.groups, *span.kernel_size, device=ind.device
    )
    conv = F.conv1d if span.kind == "conv1d" else F.conv2d
    return conv(
        ind,
        ones,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=span.groups,
    ).round()
