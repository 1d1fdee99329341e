"""Root-mean-square normalization (Zhang & Sennrich 2019, "Root Mean Square Layer
Normalization", Eq. 4), the LayerNorm of LLaMA-style transformers."""

import torch
from torch import Tensor, nn

from normtheory.checks import check_int
from normtheory.norms.batch import _affine, _check_eps, _check_input


class RMSNorm(nn.Module):
    """RMSNorm: y = x / sqrt(mean(x²) + eps) · γ_c, without mean subtraction or shift.

    Like `normtheory.norms.LayerNorm` (Group Norm with one group), the statistic is per example
    over all of C x spatial; on (N, C) input that is per row, so a transformer that applies it
    to its (N·T, d) tokens gets the per-token RMSNorm of `torch.nn.RMSNorm(d)`. Scale-invariant
    in its input (with ε = 0) but, unlike LayerNorm, not shift-invariant. No batch dependence,
    no running statistics: train and eval modes agree.

    Args:
        num_features: channel count C.
        eps: added to the mean square inside the square root.
        affine: learn a per-channel gain γ (init 1); RMSNorm has no shift β.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_features = check_int("num_features", num_features)
        self.eps = _check_eps(eps)
        self.affine = bool(affine)
        if self.affine:
            self.weight = nn.Parameter(torch.ones(num_features))
        else:
            self.register_parameter("weight", None)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.num_features, type(self).__name__)
        z = x.reshape(x.shape[0], -1)  # (N, C * M)
        ms = z.square().mean(dim=1, keepdim=True)  # (N, 1)
        y = (z * torch.rsqrt(ms + self.eps)).reshape(x.shape)
        return _affine(y, self.weight, None)
