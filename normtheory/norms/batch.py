"""Batch Normalization (with inference example weighing) and Ghost Batch Normalization.

Also holds the small helpers (argument checks, running-statistics update, block-wise
normalization) that the other norm families reuse.
"""

import math

import torch
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from normtheory.checks import check_int


def _check_eps(eps: object) -> float:
    ok = isinstance(eps, int | float) and not isinstance(eps, bool)
    if not ok or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite float >= 0, got {eps!r}")
    return float(eps)


def _check_momentum(momentum: object) -> float | None:
    if momentum is None:
        return None
    ok = isinstance(momentum, int | float) and not isinstance(momentum, bool)
    if not ok or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be None or a float in [0, 1], got {momentum!r}")
    return float(momentum)


def _check_input(x: Tensor, num_features: int, who: str) -> None:
    """Raises unless `x` is (N, C, *spatial) with C == num_features."""
    if x.ndim < 2 or x.shape[1] != num_features:
        raise ValueError(
            f"{who} expects input of shape (N, {num_features}, ...) with ndim >= 2, "
            f"got shape {tuple(x.shape)}"
        )


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel (C,) vector against `x`: (1, C, 1, ...)."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _affine(y: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """y * gamma + beta with per-channel gamma, beta (either may be None)."""
    if weight is not None:
        y = y * weight.reshape(_channel_shape(y))
    if bias is not None:
        y = y + bias.reshape(_channel_shape(y))
    return y


def _update_running_stats(module: torch.nn.Module, z: Tensor, dims: tuple[int, ...]) -> None:
    """BN's running-statistics update from the statistics of `z` over `dims`.

    r_mean <- (1 - m) r_mean + m mean, r_var <- (1 - m) r_var + m var_unbiased, where
    m = momentum, or 1 / num_batches_tracked (cumulative average) when momentum is None;
    exactly what `torch.nn.BatchNorm*d` does in training.
    """
    count = math.prod(z.shape[d] for d in dims)
    if count < 2:
        raise ValueError(
            f"Expected more than 1 value per channel (group) when training, "
            f"got input of shape {tuple(z.shape)}"
        )
    with torch.no_grad():
        var, mean = torch.var_mean(z, dim=dims, correction=1)
        module.num_batches_tracked.add_(1)
        m = module.momentum
        if m is None:
            m = 1.0 / float(module.num_batches_tracked)
        module.running_mean.mul_(1 - m).add_(mean, alpha=m)
        module.running_var.mul_(1 - m).add_(var, alpha=m)


def _blockwise_normalize(z: Tensor, block: int | None, eps: float) -> Tensor:
    """Normalizes z (N, G, K) per group over blocks of `block` consecutive examples.

    Each statistic pools one group g, the examples of one block and all K entries:
    z_hat = (z - mu) / sqrt(sigma^2 + eps), sigma^2 biased. ``block=None`` pools the whole
    batch; when `block` does not divide N, the last block holds the N mod block remainder.
    """
    n = z.shape[0]
    block = n if block is None else min(block, n)
    n_full = n - n % block
    parts = []
    if n_full:
        head = z[:n_full].unflatten(0, (n_full // block, block))  # (B, block, G, K)
        var, mean = torch.var_mean(head, dim=(1, 3), correction=0, keepdim=True)
        parts.append(((head - mean) / torch.sqrt(var + eps)).flatten(0, 1))  # (n_full, G, K)
    if n_full < n:
        tail = z[n_full:]  # (N mod block, G, K)
        var, mean = torch.var_mean(tail, dim=(0, 2), correction=0, keepdim=True)
        parts.append((tail - mean) / torch.sqrt(var + eps))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class BatchNorm(_BatchNorm):
    """Dimension-agnostic Batch Normalization with optional inference example weighing.

    Training (Ioffe & Szegedy 2015): y = gamma (x - mu_B) / sqrt(sigma_B^2 + eps) + beta with
    the biased batch variance over (N, *spatial); the running statistics get the unbiased
    variance with momentum, exactly as `torch.nn.BatchNorm2d`.

    Inference example weighing (Summers & Dinneen 2019, "Four things everyone should know to
    improve batch normalization", Sec. 3): with weight w, each example i mixes the population
    statistics with its own, per channel, biased over its spatial positions (for (N, C)
    input mu_i = x_i, sigma_i^2 = 0):

        mu      = (1 - w) mu_pop + w mu_i
        sigma^2 = (1 - w) sigma_pop^2 + w sigma_i^2 + w (1 - w) (mu_i - mu_pop)^2

    i.e. the mean and variance of the w-mixture of both distributions. w = 0 is plain
    eval-mode BN; w = 1 is instance normalization. Training mode ignores w.

    Args:
        num_features: channel count C.
        eps: added to the variance inside the square root.
        momentum: running-statistics momentum, or None for a cumulative average.
        affine: learn per-channel gamma (init 1) and beta (init 0).
        track_running_stats: keep population statistics for eval mode; without them eval
            mode normalizes with batch statistics, as in PyTorch.
        example_weight: inference example weight w in [0, 1]; needs running statistics.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        example_weight: float = 0.0,
    ) -> None:
        check_int("num_features", num_features)
        ok = isinstance(example_weight, int | float) and not isinstance(example_weight, bool)
        if not ok or not 0.0 <= example_weight <= 1.0:
            raise ValueError(f"example_weight must be a float in [0, 1], got {example_weight!r}")
        if example_weight > 0 and not track_running_stats:
            raise ValueError(
                f"example_weight={example_weight!r} mixes in population statistics, "
                "so it needs track_running_stats=True"
            )
        super().__init__(
            num_features, _check_eps(eps), _check_momentum(momentum), affine, track_running_stats
        )
        self.example_weight = float(example_weight)

    def _check_input_dim(self, input: Tensor) -> None:
        _check_input(input, self.num_features, type(self).__name__)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, example_weight={self.example_weight}"

    def forward(self, x: Tensor) -> Tensor:
        if self.eps == 0.0 and (self.training or not self.track_running_stats):
            return self._forward_eps0(x)
        if self.training or self.example_weight == 0.0:
            return super().forward(x)
        self._check_input_dim(x)
        w = self.example_weight
        shape = _channel_shape(x)
        flat = x.reshape(x.shape[0], x.shape[1], -1)  # (N, C, M); M = 1 for (N, C) input
        var_i, mu_i = torch.var_mean(flat, dim=2, correction=0)  # (N, C)
        mu_pop, var_pop = self.running_mean, self.running_var  # (C,)
        mu = (1 - w) * mu_pop + w * mu_i  # (N, C)
        var = (1 - w) * var_pop + w * var_i + w * (1 - w) * (mu_i - mu_pop) ** 2  # (N, C)
        stats = (x.shape[0],) + shape[1:]  # (N, C, 1, ...)
        y = (x - mu.reshape(stats)) / torch.sqrt(var.reshape(stats) + self.eps)
        return _affine(y, self.weight, self.bias)

    def _forward_eps0(self, x: Tensor) -> Tensor:
        """Batch-statistics forward with ε = 0, computed here because ``F.batch_norm`` refuses
        eps = 0 in training; ε = 0 is the exactly scale-invariant map that the theory
        (BN-GRAD, SI-ORTH, SI-GROWTH) is about."""
        self._check_input_dim(x)
        if self.training and self.track_running_stats:
            _update_running_stats(self, x, (0, *range(2, x.ndim)))
        z = x.reshape(x.shape[0], x.shape[1], -1)  # (N, C, M)
        return _affine(_blockwise_normalize(z, None, 0.0).reshape(x.shape), self.weight, self.bias)


class GhostBatchNorm(BatchNorm):
    """Ghost Batch Normalization (Hoffer, Hubara & Soudry 2017, "Train longer, generalize
    better", Alg. 1).

    Training: the batch is split into consecutive ghost batches of `ghost_size` examples
    (the last one holds the remainder) and each is normalized with its own biased
    statistics over (examples, *spatial). The running statistics are the population
    statistics of BN: updated with momentum from the mean and unbiased variance of the FULL
    batch, so eval mode is exactly BatchNorm's eval mode.

    Args:
        num_features: channel count C.
        ghost_size: examples per ghost batch (>= 1).
        eps: added to the variance inside the square root.
        momentum: running-statistics momentum, or None for a cumulative average.
        affine: learn per-channel gamma (init 1) and beta (init 0).
    """

    def __init__(
        self,
        num_features: int,
        ghost_size: int = 16,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats=True)
        self.ghost_size = check_int("ghost_size", ghost_size)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ghost_size={self.ghost_size}"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        z = x.reshape(x.shape[0], x.shape[1], -1)  # (N, C, M)
        _update_running_stats(self, z, dims=(0, 2))
        y = _blockwise_normalize(z, self.ghost_size, self.eps).reshape(x.shape)
        return _affine(y, self.weight, self.bias)
