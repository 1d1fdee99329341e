"""The loss landscape along the gradient: loss range, gradient predictiveness and effective
β-smoothness (Santurkar et al. 2018, Sec. 3.1).

Pure, with the fixed loss and the common arguments of `normtheory.measure.curvature`; the
shifted weights go through ``functional_call``, so the model's weights are never written.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from normtheory.checks import check_int
from normtheory.measure._functional import LossFn, fixed_loss
from normtheory.measure.curvature import Params


@dataclass(frozen=True)
class SmoothnessResult:
    """Loss landscape along the gradient (Santurkar et al. 2018, Sec. 3.1).

    Attributes:
        loss: L(w) at the current weights.
        lrs: (P,) step sizes η.
        losses: (P,) L(w − η g).
        grad_diffs: (P,) ‖∇L(w) − ∇L(w − η g)‖ (gradient predictiveness).
        loss_range: max − min of [L(w)] ∪ losses.
        grad_pred_min, grad_pred_max: min and max of grad_diffs.
        beta: effective β-smoothness max_η ‖∇L(w) − ∇L(w − η g)‖ / ‖η g‖ (nan if g = 0).
        grad_norm: ‖g‖.
        n_grad: gradient evaluations spent (1 + P).
    """

    loss: float
    lrs: Tensor
    losses: Tensor
    grad_diffs: Tensor
    loss_range: float
    grad_pred_min: float
    grad_pred_max: float
    beta: float
    grad_norm: float
    n_grad: int


def gradient_smoothness(
    model: nn.Module,
    loss_fn: LossFn,
    data: object,
    *,
    lr: float,
    mode: str = "train",
    params: Params = None,
    multipliers: tuple[float, float] = (0.5, 4.0),
    n_points: int = 8,
    metric: Mapping[str, Tensor] | None = None,
) -> SmoothnessResult:
    """Loss range, gradient predictiveness and effective β-smoothness along −∇L.

    Santurkar, Tsipras, Ilyas & Madry 2018 ("How does batch normalization help
    optimization?", Sec. 3.1, Fig. 4): with g = ∇L(w) and η_j = lr · geomspace(a, b, P),

        losses_j     = L(w − η_j g)
        grad_diffs_j = ‖∇L(w) − ∇L(w − η_j g)‖
        β            = max_j grad_diffs_j / ‖η_j g‖.

    Everything is evaluated on the same batches with the same dropout masks; the weights are
    never written (the shifted weights go through ``functional_call``).

    With a `metric` D (per-parameter scales, e.g.
    `normtheory.measure.scale_invariant.invariant_metric`) the same quantities are taken in the
    coordinates u = D⁻¹ w (D held fixed): gradient D g, steps u − η D g, i.e. w − η D² g, and

        grad_diffs_j = ‖D (∇L(w) − ∇L(w − η_j D² g))‖,   β = max_j grad_diffs_j / ‖η_j D g‖,

    with grad_norm ‖D g‖. When D is the size of the scale-invariant weight groups these equal
    the plain measures at the canonical point D⁻¹ w and do not change when such a group is
    rescaled (see `invariant_metric`).

    Args:
        lr: the training learning rate (> 0).
        multipliers: (a, b), 0 < a <= b: the range of η as multiples of lr.
        n_points: P >= 1 step sizes, geometrically spaced.
        metric: None (D = 1) or ``{parameter name: D}``, parameters not named having D = 1.
    """
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    a, b = multipliers
    if not 0 < a <= b:
        raise ValueError(f"multipliers must satisfy 0 < a <= b, got {multipliers!r}")
    check_int("n_points", n_points)
    lrs = lr * np.geomspace(a, b, n_points)
    with fixed_loss(model, loss_fn, data, mode=mode, params=params) as f:
        w = f.flat_params()
        d = f.diagonal(metric)
        scale = (lambda v: v) if d is None else (lambda v: d * v)  # noqa: E731
        loss0, g = f.loss_grad()
        step = scale(scale(g))  # D² g: the gradient step in u, mapped back to w
        losses, diffs = [], []
        for eta in lrs:
            loss, grad = f.loss_grad(w - eta * step)
            losses.append(loss)
            diffs.append(torch.linalg.vector_norm(scale(g - grad)).item())
        n_grad = f.n_grad
    g_norm = torch.linalg.vector_norm(scale(g)).item()
    diffs_np = np.asarray(diffs)
    beta = float(np.max(diffs_np / (lrs * g_norm))) if g_norm > 0 else float("nan")
    return SmoothnessResult(
        lrs=torch.as_tensor(lrs, dtype=torch.float64),
        loss=float(loss0),
        losses=torch.as_tensor(losses, dtype=torch.float64),
        grad_diffs=torch.as_tensor(diffs_np, dtype=torch.float64),
        loss_range=float(max([loss0, *losses]) - min([loss0, *losses])),
        grad_pred_min=float(diffs_np.min()),
        grad_pred_max=float(diffs_np.max()),
        beta=beta,
        grad_norm=g_norm,
        n_grad=n_grad,
    )
