"""Batch Kalman Normalization (Wang et al. 2018): a layer's statistics estimated from its own
batch statistics and the statistics of the preceding normalization layer."""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from normtheory.checks import check_int
from normtheory.norms.batch import (
    _channel_shape,
    _check_eps,
    _check_input,
    _check_momentum,
)


class _Slot:
    """The estimate of a layer's last train-mode forward (with its autograd graph), read by the
    next layer in the same forward pass. Copies (``copy.deepcopy``, pickling) start empty, so a
    model with a graph-carrying estimate can still be copied."""

    __slots__ = ("calls", "value")

    def __init__(self) -> None:
        self.calls, self.value = 0, None

    def __deepcopy__(self, memo) -> "_Slot":
        return _Slot()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.calls, self.value = 0, None


class BatchKalmanNorm(nn.Module):
    """Batch Kalman Normalization (Wang, Peng, Luo, Wang & Lin 2018, "Batch Kalman
    Normalization: Towards Training Deep Neural Networks with Micro-Batches", arXiv:1802.03133,
    Sec. 3; NeurIPS version "Kalman Normalization").

    The paper treats the layers as the time steps of a linear dynamic system, x^k = A^k x^{k−1}
    + u^k, observed through the batch (its Eq. 2), and estimates the statistics of layer k as a
    Kalman filter would: predict them from the estimate of layer k − 1, then correct the
    prediction with the layer's own, noisy, batch statistics μ̄_k, σ̄²_k (biased, over N and the
    positions), with a gain q_k. Per channel c of layer k (C_k channels; the previous
    normalization layer has C_{k−1})::

        μ_{k|k−1} = A_k μ̂_{k−1} + u_k                        (prediction of the mean)
        σ²_{k|k−1} = (A_k ∘ A_k) σ̂²_{k−1} + softplus(ρ_k)    (diag of A Σ Aᵀ + R)
        μ̂_k  = μ_{k|k−1} + q_k (μ̄_k − μ_{k|k−1})
        σ̂²_k = (1 − q_k) σ²_{k|k−1} + q_k σ̄²_k + q_k (1 − q_k)(μ̄_k − μ_{k|k−1})²
        y = γ (x − μ̂_k) / √(σ̂²_k + ε) + β

    (the update of the mean and of the variance, the variance of the q-mixture of the predicted
    and observed distributions, as in the authors' released code, `kalman_norm.py`, where the
    mixing weight of the prediction is ``p_rate`` = 1 − q). Gradients flow through μ̄, σ̄² and
    the prediction, i.e. into the previous layer's estimate.

    What is simplified: the transition A_k (C_k × C_{k−1}) and the bias u_k are learned
    parameters (init 0), as are the process noise ρ_k (init softplus(ρ) = 1) and the gain
    q_k = sigmoid(θ_k) (init `gain`), all per channel; the authors' code instead propagates
    Gaussian samples of the previous statistics through the layer's own convolution. Only the
    diagonal of the covariance is kept. The first normalization layer of a model (no
    predecessor) is plain BN, as in the authors' code. Eval mode normalizes with running
    statistics: a momentum average of (μ̂_k, σ̂²_k), the latter with the unbiased batch variance,
    so an unlinked layer is BN in both modes.

    Linking: `link_kalman` (called by `normtheory.models.build_model`) gives each
    `BatchKalmanNorm` of a model the previous one in module order as its predecessor and creates
    its transition parameters. A layer uses its predecessor's estimate only when the
    predecessor ran in the same forward pass (each counts its train-mode calls).

    Args:
        num_features: channel count C.
        eps: added to the variance inside the square root.
        momentum: running-statistics momentum, or None for a cumulative average.
        affine: learn per-channel γ (init 1) and β (init 0).
        gain: the initial gain q in (0, 1): the weight of the layer's own batch statistics.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        gain: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_features = check_int("num_features", num_features)
        self.eps = _check_eps(eps)
        self.momentum = _check_momentum(momentum)
        ok = isinstance(gain, int | float) and not isinstance(gain, bool)
        if not ok or not 0.0 < gain < 1.0:
            raise ValueError(f"gain must be a float in (0, 1), got {gain!r}")
        self.gain_init = float(gain)
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self._prev: tuple[BatchKalmanNorm, ...] = ()  # not a submodule: no double registration
        self._slot = _Slot()
        for name in ("transition", "transition_bias", "process_noise", "gain_logit"):
            self.register_parameter(name, None)  # created by `link`

    @property
    def predecessor(self) -> "BatchKalmanNorm | None":
        return self._prev[0] if self._prev else None

    def link(self, prev: "BatchKalmanNorm") -> None:
        """Makes `prev` this layer's predecessor and creates the transition A (C × C_prev, 0),
        its bias u (0), the process noise ρ (softplus(ρ) = 1) and the gain logit θ."""
        if not isinstance(prev, BatchKalmanNorm) or prev is self:
            raise ValueError(f"a BatchKalmanNorm links to another BatchKalmanNorm, not {prev!r}")
        c, kw = (
            self.num_features,
            dict(dtype=self.running_mean.dtype, device=self.running_mean.device),
        )
        self._prev = (prev,)
        self.transition = nn.Parameter(torch.zeros(c, prev.num_features, **kw))  # A
        self.transition_bias = nn.Parameter(torch.zeros(c, **kw))  # u
        self.process_noise = nn.Parameter(torch.full((c,), math.log(math.e - 1.0), **kw))  # ρ
        logit = math.log(self.gain_init / (1.0 - self.gain_init))
        self.gain_logit = nn.Parameter(torch.full((c,), logit, **kw))  # θ: q = sigmoid(θ)

    def extra_repr(self) -> str:
        linked = "" if self.predecessor is None else f", linked to {self.predecessor.num_features}"
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, gain={self.gain_init}{linked}"

    def gain(self) -> Tensor | None:
        """The current gains q (C,), or None for an unlinked layer (q = 1: plain BN)."""
        return None if self.gain_logit is None else torch.sigmoid(self.gain_logit)

    def _prior(self) -> tuple[Tensor, Tensor] | None:
        """(μ_{k|k−1}, σ²_{k|k−1}) from the predecessor's estimate of this forward pass."""
        prev = self.predecessor
        if prev is None or prev._slot.value is None or prev._slot.calls != self._slot.calls:
            return None
        mu_prev, var_prev = prev._slot.value  # (C_prev,), (C_prev,)
        mu = self.transition @ mu_prev + self.transition_bias  # (C,)
        var = self.transition.square() @ var_prev + F.softplus(self.process_noise)  # (C,)
        return mu, var

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.num_features, type(self).__name__)
        shape = _channel_shape(x)
        if not self.training:
            mean, var = self.running_mean, self.running_var
        else:
            dims = (0, *range(2, x.ndim))
            count = math.prod(x.shape[d] for d in dims)
            if count < 2:
                raise ValueError(
                    f"Expected more than 1 value per channel when training, got input of shape "
                    f"{tuple(x.shape)}"
                )
            var_b, mu_b = torch.var_mean(x, dim=dims, correction=0)  # (C,), (C,)
            self._slot.calls += 1
            prior = self._prior()
            if prior is None:
                mean, var, pop_var = mu_b, var_b, var_b * count / (count - 1)
            else:
                mu_p, var_p = prior
                q, diff = self.gain(), mu_b - mu_p
                mean = mu_p + q * diff
                spread = (1 - q) * var_p + q * (1 - q) * diff.square()
                var = spread + q * var_b
                pop_var = spread + q * var_b * count / (count - 1)
            self._slot.value = (mean, var)
            self._update_running(mean.detach(), pop_var.detach())
        # y = γ (x − μ̂)/√(σ̂² + ε) + β as one scale and shift per channel (2 passes over x)
        scale = torch.rsqrt(var + self.eps)  # (C,)
        shift = -mean * scale
        if self.weight is not None:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        return x * scale.reshape(shape) + shift.reshape(shape)

    @torch.no_grad()
    def _update_running(self, mean: Tensor, var: Tensor) -> None:
        self.num_batches_tracked.add_(1)
        m = self.momentum
        if m is None:
            m = 1.0 / float(self.num_batches_tracked)
        self.running_mean.mul_(1 - m).add_(mean, alpha=m)
        self.running_var.mul_(1 - m).add_(var, alpha=m)


def link_kalman(model: nn.Module) -> nn.Module:
    """Links every `BatchKalmanNorm` of `model` to the previous one in module order (the first
    stays unlinked: plain BN) and returns the model. Call it once, before building the
    optimizer (it creates parameters); `normtheory.models.build_model` does."""
    prev = None
    for module in model.modules():
        if isinstance(module, BatchKalmanNorm):
            if prev is not None and module.predecessor is None:
                module.link(prev)
            prev = module
    return model
