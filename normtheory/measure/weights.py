"""Scale invariance of weights feeding normalization layers: SI-ORTH, SI-GROWTH (CLAIMS.md).

A weight w is scale-invariant when L(c w) = L(w) for every c > 0, e.g. a weight feeding
train-mode BatchNorm with ε = 0. Then (Liu et al. 2021; van Laarhoven 2017)

    ⟨w, ∇L(w)⟩ = 0                                    (SI-ORTH, Euler's theorem)
    ‖w_{t+1}‖² = (1 − ηλ)² ‖w_t‖² + η² ‖g_t‖²          (SI-GROWTH, SGD with coupled decay λ)

since SGD steps w_{t+1} = (1 − ηλ) w_t − η g_t and the cross term 2η(1 − ηλ)⟨w_t, g_t⟩
vanishes; g_t is the loss gradient without the decay term. The step changes the direction
of w by about η‖g‖/‖w‖, so η/‖w‖² is the effective learning rate.

`normtheory.measure.scale_invariant.find_scale_invariant` finds such weights in a model from its
structure; `normtheory.measure.identities_si` checks SI-ORTH exactly on a given loss.
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def _rows(t: Tensor) -> Tensor:
    return t.detach().reshape(t.shape[0], -1)  # (out, fan_in)


def _safe_div(num: Tensor, denom: Tensor) -> Tensor:
    """num / denom with 0 where denom == 0 (a zero vector is orthogonal to everything)."""
    return torch.where(denom > 0, num / torch.where(denom > 0, denom, 1), 0)


@dataclass(frozen=True)
class ScaleInvarianceCosine:
    """cos(w, ∇L) = ⟨w, ∇L⟩ / (‖w‖ ‖∇L‖), zero for a scale-invariant weight (SI-ORTH).

    Attributes:
        per_channel: the cosine of every output row, (out,).
        total: the cosine of the whole tensors.
    """

    per_channel: Tensor
    total: float


def scale_invariance_cosine(weight: Tensor, grad: Tensor) -> ScaleInvarianceCosine:
    """⟨w, ∇L⟩ / (‖w‖ ‖∇L‖) per output channel (row of ``weight.reshape(out, -1)``) and
    overall; 0 where either vector is 0. Signed: a weight decay gradient gives +1.

    Raises:
        ValueError: `weight` and `grad` differ in shape.
    """
    if weight.shape != grad.shape:
        raise ValueError(
            f"weight and grad must have the same shape, got {tuple(weight.shape)} "
            f"and {tuple(grad.shape)}"
        )
    w, g = _rows(weight).double(), _rows(grad).double()  # (out, fan_in)
    per_channel = _safe_div((w * g).sum(1), w.norm(dim=1) * g.norm(dim=1))
    total = _safe_div((w * g).sum(), w.norm() * g.norm())
    return ScaleInvarianceCosine(per_channel=per_channel, total=float(total))


def growth_residual(
    w_prev: Tensor,
    w_next: Tensor,
    grad: Tensor,
    lr: float,
    weight_decay: float = 0.0,
    *,
    relative: bool = False,
    per_channel: bool = False,
) -> float | Tensor:
    """SI-GROWTH residual ‖w_{t+1}‖² − ((1 − ηλ)² ‖w_t‖² + η² ‖g_t‖²), computed in float64.

    Zero (to rounding) for a scale-invariant weight after one step of plain SGD,
    w_{t+1} = w_t − η (g_t + λ w_t) (``torch.optim.SGD(lr=η, weight_decay=λ)``, no
    momentum); otherwise it equals −2η(1 − ηλ)⟨w_t, g_t⟩.

    Args:
        w_prev: w_t, the weight before the step.
        w_next: w_{t+1}, the weight after it.
        grad: g_t, the gradient of the loss at w_t WITHOUT the decay term.
        lr: η.
        weight_decay: λ, the coupled decay of the step.
        relative: divide by ‖w_{t+1}‖² (by ‖w_{t+1,o}‖² per row with `per_channel`).
        per_channel: the residual of every output row w_o (``reshape(out, -1)``), (out,)
            float64: the identity per row, which holds for per-channel invariance (BN).
    """
    w0, w1, g = (_rows(t).double() for t in (w_prev, w_next, grad))  # (out, fan_in)
    next_sq = w1.square().sum(1)
    predicted = (1 - lr * weight_decay) ** 2 * w0.square().sum(1) + lr**2 * g.square().sum(1)
    if not per_channel:
        next_sq, predicted = next_sq.sum(), predicted.sum()
    residual = next_sq - predicted
    if relative:
        inf = torch.full_like(residual, math.inf).copysign(residual)
        residual = torch.where(next_sq > 0, residual / torch.where(next_sq > 0, next_sq, 1), inf)
    return residual if per_channel else float(residual)


def effective_lr(weight: Tensor, lr: float, *, per_channel: bool = False) -> float | Tensor:
    """Effective learning rate η / ‖w‖² of a scale-invariant weight; per output row, (out,),
    with `per_channel` (the right one for per-channel invariance, e.g. BN)."""
    if per_channel:
        return lr / _rows(weight).double().square().sum(1)
    return lr / float(weight.detach().double().square().sum())
