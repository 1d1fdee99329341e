"""Any registered norm applied token by token to a sequence, as transformers apply theirs."""

from torch import Tensor, nn


class TokenNorm(nn.Module):
    """Applies a registry norm (which takes (N, C, ...) inputs) to the tokens of (N, T, d).

    The N·T tokens are stacked as examples of d features, (N·T, d), normalized, and put back:
    with ``layer`` (one group) or ``rms`` that is the per-token LayerNorm / RMSNorm of
    transformers (`torch.nn.LayerNorm(d)`); with ``batch`` it is BN over the batch and the
    sequence per feature (the BatchNorm of Shen et al. 2020, "PowerNorm"); ``group`` pools each
    token's features in groups.

    Args:
        norm: the norm over d features, e.g. ``build_norm("layer", d)``.
    """

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3:
            raise ValueError(f"TokenNorm expects (N, T, d) input, got shape {tuple(x.shape)}")
        n, t, d = x.shape
        return self.norm(x.reshape(n * t, d)).reshape(n, t, d)  # (N·T, d) -> (N, T, d)
