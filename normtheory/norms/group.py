"""Group Normalization and its special cases (Layer, Instance), and Batch-Group Normalization."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from normtheory.checks import check_int
from normtheory.norms.batch import (
    _affine,
    _blockwise_normalize,
    _check_eps,
    _check_input,
    _check_momentum,
    _update_running_stats,
)

DEFAULT_GROUPS = 32


def _clip_groups(num_features: int, groups: int) -> int:
    """Largest divisor of `num_features` that is <= `groups` (so 32 groups fit any C)."""
    check_int("groups", groups)
    return max(d for d in range(1, min(groups, num_features) + 1) if num_features % d == 0)


def _affine_params(module: nn.Module, num_features: int, affine: bool) -> None:
    if affine:
        module.weight = nn.Parameter(torch.ones(num_features))
        module.bias = nn.Parameter(torch.zeros(num_features))
    else:
        module.register_parameter("weight", None)
        module.register_parameter("bias", None)


class GroupNorm(nn.Module):
    """Group Normalization (Wu & He 2018, "Group Normalization", Eq. 1-3 and 7).

    The C channels are split into G groups of C/G consecutive channels; each example and
    group is normalized over its channels and spatial positions,
    x_hat = (x - mu_{n,g}) / sqrt(sigma_{n,g}^2 + eps) (biased variance), then
    y = gamma_c x_hat + beta_c per channel. G is the largest divisor of C that is <= `groups`,
    so the default 32 is clipped to a divisor of C; the effective value is `self.groups`.
    No batch dependence, no running statistics: train and eval modes agree.

    Args:
        num_features: channel count C.
        groups: requested number of groups (>= 1), clipped to a divisor of C.
        eps: added to the variance inside the square root.
        affine: learn per-channel gamma (init 1) and beta (init 0).
    """

    def __init__(
        self,
        num_features: int,
        groups: int = DEFAULT_GROUPS,
        eps: float = 1e-5,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.num_features = check_int("num_features", num_features)
        self.groups = _clip_groups(num_features, groups)
        self.eps = _check_eps(eps)
        self.affine = bool(affine)
        _affine_params(self, num_features, self.affine)

    def extra_repr(self) -> str:
        return f"{self.num_features}, groups={self.groups}, eps={self.eps}, affine={self.affine}"

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.num_features, type(self).__name__)
        if x.numel() != x.shape[1]:
            return F.group_norm(x, self.groups, self.weight, self.bias, self.eps)
        # F.group_norm rejects a single response per channel (it applies BN's "more than one
        # value per channel" check), yet a group of C/G channels still has C/G values.
        z = x.reshape(1, self.groups, -1)  # (1, G, C/G * M)
        var, mean = torch.var_mean(z, dim=2, correction=0, keepdim=True)
        y = ((z - mean) / torch.sqrt(var + self.eps)).reshape(x.shape)
        return _affine(y, self.weight, self.bias)


class LayerNorm(GroupNorm):
    """Layer Normalization as in Wu & He 2018 (Fig. 2): Group Norm with one group.

    Statistics over all of C x spatial per example (Ba, Kiros & Hinton 2016), with a
    per-channel gamma, beta (not per element as `torch.nn.LayerNorm`). On (N, C) input the
    statistics are per row: a transformer that applies it to its (N·T, d) tokens gets the
    per-token LayerNorm of `torch.nn.LayerNorm(d)`.

    Args:
        num_features: channel count C.
        eps: added to the variance inside the square root.
        affine: learn per-channel gamma (init 1) and, with `bias`, beta (init 0).
        bias: with `affine`, also learn beta (False: "LayerNorm without bias", as in PaLM).
    """

    def __init__(
        self, num_features: int, eps: float = 1e-5, affine: bool = True, bias: bool = True
    ) -> None:
        super().__init__(num_features, groups=1, eps=eps, affine=affine)
        if not bias:
            self.register_parameter("bias", None)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bias={self.bias is not None}"


class InstanceNorm(GroupNorm):
    """Instance Normalization (Ulyanov, Vedaldi & Lempitsky 2016): Group Norm with C groups.

    Statistics per example and channel over the spatial positions; no running statistics.
    For (N, C) input every group holds one value, so the output is beta.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True) -> None:
        check_int("num_features", num_features)
        super().__init__(num_features, groups=num_features, eps=eps, affine=affine)


class BatchGroupNorm(nn.Module):
    """Batch-Group Normalization (Zhou et al. 2020, "Batch Group Normalization", Eq. 3-4).

    Statistics pool one block of `examples_per_group` consecutive examples (the whole batch
    when None; the last block holds the remainder) x one group of C/G consecutive channels x
    all spatial positions: x_hat = (x - mu) / sqrt(sigma^2 + eps), sigma^2 biased, then
    y = gamma_c x_hat + beta_c per channel.

    Running statistics are buffers of shape (G,), one per channel group, updated like BN's
    from the FULL batch: r <- (1 - m) r + m stat with the group mean and unbiased variance.
    Eval mode normalizes with them, or, with track_running_stats=False, with the same
    per-block batch statistics as training.

    Special cases: channels_per_group=1 is BatchNorm (examples_per_group=None) or
    GhostBatchNorm(ghost_size=examples_per_group); examples_per_group=1 without running
    statistics is GroupNorm(groups=G).

    Args:
        num_features: channel count C.
        examples_per_group: examples per statistics block (>= 1), or None for the whole batch.
        groups: requested number of channel groups, clipped to a divisor of C like GroupNorm;
            None means 32 unless `channels_per_group` is given.
        channels_per_group: channels per group (must divide C); excludes `groups`.
        eps: added to the variance inside the square root.
        momentum: running-statistics momentum, or None for a cumulative average.
        affine: learn per-channel gamma (init 1) and beta (init 0).
        track_running_stats: keep per-group population statistics for eval mode.
    """

    def __init__(
        self,
        num_features: int,
        examples_per_group: int | None = None,
        groups: int | None = None,
        channels_per_group: int | None = None,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__()
        self.num_features = check_int("num_features", num_features)
        if examples_per_group is not None:
            check_int("examples_per_group", examples_per_group)
        self.examples_per_group = examples_per_group
        if groups is not None and channels_per_group is not None:
            raise ValueError(
                f"give groups ({groups!r}) or channels_per_group ({channels_per_group!r}), not both"
            )
        if channels_per_group is not None:
            check_int("channels_per_group", channels_per_group)
            if num_features % channels_per_group:
                raise ValueError(
                    f"channels_per_group must divide num_features={num_features}, "
                    f"got {channels_per_group!r}"
                )
            self.groups = num_features // channels_per_group
        else:
            self.groups = _clip_groups(num_features, DEFAULT_GROUPS if groups is None else groups)
        self.channels_per_group = num_features // self.groups
        self.eps = _check_eps(eps)
        self.momentum = _check_momentum(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        _affine_params(self, num_features, self.affine)
        if self.track_running_stats:
            self.register_buffer("running_mean", torch.zeros(self.groups))
            self.register_buffer("running_var", torch.ones(self.groups))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, examples_per_group={self.examples_per_group}, "
            f"groups={self.groups}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.num_features, type(self).__name__)
        # Channels of a group are consecutive, so (C, *spatial) flattens group by group.
        z = x.reshape(x.shape[0], self.groups, -1)  # (N, G, C/G * M)
        if self.training and self.track_running_stats:
            _update_running_stats(self, z, dims=(0, 2))
        if self.training or not self.track_running_stats:
            z_hat = _blockwise_normalize(z, self.examples_per_group, self.eps)
        else:
            mean = self.running_mean[:, None]  # (G, 1)
            z_hat = (z - mean) / torch.sqrt(self.running_var[:, None] + self.eps)
        return _affine(z_hat.reshape(x.shape), self.weight, self.bias)
