"""Batch Renormalization (Ioffe 2017): BN corrected toward its population statistics."""

import math

import torch
from torch import Tensor, nn

from normtheory.checks import check_int
from normtheory.norms.batch import (
    _affine,
    _channel_shape,
    _check_eps,
    _check_input,
    _check_momentum,
)

# The paper's schedule (Ioffe 2017, Sec. 4, Inception on ImageNet): r_max = 1 and d_max = 0 for
# the first 5 000 steps, then relaxed to reach d_max = 5 at 25 000 steps and r_max = 3 at 40 000.
PAPER_STEPS = 40000
_WARMUP, _D_END = 5000 / PAPER_STEPS, 25000 / PAPER_STEPS  # as shares of `renorm_steps`


def _check_limit(name: str, value: object, low: float) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < low:
        raise ValueError(f"{name} must be a finite float >= {low}, got {value!r}")
    return float(value)


class BatchRenorm(nn.Module):
    """Batch Renormalization (Ioffe 2017, "Batch Renormalization: Towards Reducing Minibatch
    Dependence in Batch-Normalized Models", Algorithm 1).

    Training, per channel, with the batch statistics μ_B, σ_B = √(var_B + ε) (biased variance
    over (N, *spatial)) and the running ones μ, σ = √(running_var + ε) *before* this batch's
    update::

        r = clip(σ_B / σ, 1/r_max, r_max),   d = clip((μ_B − μ) / σ, −d_max, d_max)
        y = γ ((x − μ_B) / σ_B · r + d) + β

    with r and d constants in the backward pass (``stop_gradient``: gradients flow through μ_B
    and σ_B as in BN). Unclipped, y = γ (x − μ)/σ + β: the output the population statistics give,
    so training and inference agree; the clipping keeps the first steps (bad running
    statistics) BN-like. The running statistics are then updated exactly as BN's (momentum, the
    unbiased batch variance; the paper averages σ rather than σ², a difference of second order
    in the momentum), and eval mode is BN's eval mode. With r_max = 1 and d_max = 0 it is BN,
    in both modes.

    Schedule (`renorm_steps`): the limits in force at training step t (counted by
    ``num_batches_tracked``) follow the paper's warm-up, scaled to a run of `renorm_steps`
    steps: r_max(t) = 1 and d_max(t) = 0 for t < renorm_steps/8, then linear ramps reaching
    `d_max` at 5/8 · renorm_steps and `r_max` at renorm_steps (the paper: 5 000, 25 000, 40 000
    steps, the default). ``renorm_steps=0`` applies `r_max`, `d_max` from the first step.

    Args:
        num_features: channel count C.
        eps: added to the variances inside the square roots.
        momentum: running-statistics momentum, or None for a cumulative average.
        affine: learn per-channel γ (init 1) and β (init 0).
        r_max: the final bound of r (≥ 1; the paper: 3).
        d_max: the final bound of |d| (≥ 0; the paper: 5).
        renorm_steps: length of the warm-up schedule in steps (0: none).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        r_max: float = 3.0,
        d_max: float = 5.0,
        renorm_steps: int = PAPER_STEPS,
    ) -> None:
        super().__init__()
        self.num_features = check_int("num_features", num_features)
        self.eps = _check_eps(eps)
        self.momentum = _check_momentum(momentum)
        self.r_max = _check_limit("r_max", r_max, 1.0)
        self.d_max = _check_limit("d_max", d_max, 0.0)
        if isinstance(renorm_steps, bool) or not isinstance(renorm_steps, int) or renorm_steps < 0:
            raise ValueError(f"renorm_steps must be an int >= 0, got {renorm_steps!r}")
        self.renorm_steps = renorm_steps
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"r_max={self.r_max}, d_max={self.d_max}, renorm_steps={self.renorm_steps}"
        )

    def limits(self, step: int | None = None) -> tuple[float, float]:
        """(r_max, d_max) in force at training step `step` (default: the next one)."""
        t = int(self.num_batches_tracked) if step is None else step
        n = self.renorm_steps
        if n == 0:
            return self.r_max, self.d_max
        warm, d_end = _WARMUP * n, _D_END * n

        def ramp(end: float) -> float:
            return min(max((t - warm) / (end - warm), 0.0), 1.0)

        return 1.0 + (self.r_max - 1.0) * ramp(n), self.d_max * ramp(d_end)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.num_features, type(self).__name__)
        shape = _channel_shape(x)
        if not self.training:
            mean, var = self.running_mean, self.running_var
            y = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
            return _affine(y, self.weight, self.bias)
        dims = (0, *range(2, x.ndim))
        count = math.prod(x.shape[d] for d in dims)
        if count < 2:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input of shape "
                f"{tuple(x.shape)}"
            )
        r_max, d_max = self.limits()
        var_b, mu_b = torch.var_mean(x, dim=dims, correction=0)  # (C,), (C,)
        sigma_b = torch.sqrt(var_b + self.eps)
        with torch.no_grad():  # r and d are constants of the backward pass
            sigma = torch.sqrt(self.running_var + self.eps)
            r = (sigma_b / sigma).clamp(1.0 / r_max, r_max)
            d = ((mu_b - self.running_mean) / sigma).clamp(-d_max, d_max)
            self._update_running(mu_b, var_b * count / (count - 1))
        # y = γ ((x − μ_B)/σ_B · r + d) + β as one scale and shift per channel (2 passes over x)
        scale = r / sigma_b  # (C,)
        shift = d - mu_b * scale
        if self.weight is not None:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        return x * scale.reshape(shape) + shift.reshape(shape)

    def _update_running(self, mean: Tensor, var: Tensor) -> None:
        """BN's update: momentum (or a cumulative average), the unbiased batch variance."""
        self.num_batches_tracked.add_(1)
        m = self.momentum
        if m is None:
            m = 1.0 / float(self.num_batches_tracked)
        self.running_mean.mul_(1 - m).add_(mean, alpha=m)
        self.running_var.mul_(1 - m).add_(var, alpha=m)
