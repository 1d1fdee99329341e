"""Elimination singularities (Qiao et al. 2019, Weight Standardization; CLAIMS.md: WS-SINGULAR):
channels that a ReLU after the norm switches off for (almost) every example, and how far each
channel's statistics sit from the zero-mean / unit-variance point that BN enforces."""

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ChannelHealth:
    """Per-channel health of a normalization layer's output y (before its ReLU), over a batch.

    Attributes:
        off_fraction: (C,) fraction of examples whose post-ReLU map relu(y_c) is all zero.
        dead: (C,) bool, off for every example (an eliminated channel).
        stat_diff: (C,) StatDiff_c = √(μ_c² + (σ_c − 1)²), the distance of the channel's mean
            μ_c and standard deviation σ_c (over examples and positions) from (0, 1).
        mean_shift: (C,) μ_c / σ_c: how many standard deviations the channel's mean sits from 0
            (≪ 0: a ReLU after it is almost always off).
    """

    off_fraction: Tensor
    dead: Tensor
    stat_diff: Tensor
    mean_shift: Tensor

    def summary(self) -> dict[str, float]:
        """Layer means: dead (fraction of channels), off, stat_diff, mean_shift."""
        return {
            "dead": float(self.dead.double().mean()),
            "off": float(self.off_fraction.mean()),
            "stat_diff": float(self.stat_diff.mean()),
            "mean_shift": float(self.mean_shift.mean()),
        }


def channel_health(y: Tensor) -> ChannelHealth:
    """`ChannelHealth` of a norm's output `y`: (N, C) or (N, C, *spatial), float64 internally.

    Raises:
        ValueError: `y` has fewer than 2 dims or fewer than 2 examples.
    """
    if y.ndim < 2 or y.shape[0] < 2:
        raise ValueError(
            f"need a batch (N >= 2, C, ...) of activations, got shape {tuple(y.shape)}"
        )
    flat = y.detach().double().reshape(y.shape[0], y.shape[1], -1)  # (N, C, S)
    off = (flat <= 0).all(dim=2).double().mean(0)  # (C,)
    per_channel = flat.transpose(0, 1).reshape(y.shape[1], -1)  # (C, N·S)
    std, mean = torch.std_mean(per_channel, dim=1, correction=0)
    shift = torch.where(std > 0, mean / std.clamp_min(1e-300), torch.sign(mean) * torch.inf)
    return ChannelHealth(
        off_fraction=off,
        dead=off == 1.0,
        stat_diff=(mean.square() + (std - 1).square()).sqrt(),
        mean_shift=shift,
    )
