"""Exact identities of train-mode Batch Norm, both sides computed: BN-GRAD, BN-HESS (CLAIMS.md).

Notation: m = batch size, y = one channel's BN input (m,), y_hat = (y - mu) / sigma with the
biased sigma (so <1, y_hat> = 0 and ||y_hat||^2 = m), z = gamma y_hat + beta, g = dL/dz.

The left-hand sides come from autograd through the BN under test, ``bn`` (the library's
`BatchNorm` in ``normtheory verify``; by default the explicit `bn_forward_exact`). The
right-hand sides are the paper's closed forms, always evaluated on the oracle: mu, sigma,
y_hat from `bn_forward_exact` (float64, biased variance, eps = 0) and g, H taken at its z, so
a BN that computes its statistics wrongly makes the two sides disagree.
"""

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from normtheory.measure.identity_check import IdentityCheck, Loss, scalar_loss, worst_channel

Forward = Callable[[Tensor], Tensor]


def _bn_inputs(
    y: Tensor, gamma: float | Tensor, beta: float | Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    y = torch.as_tensor(y).detach().to(torch.float64)
    y = y[:, None] if y.ndim == 1 else y  # (m, C)
    if y.ndim != 2 or y.shape[0] < 2:
        raise ValueError(f"y must be (m,) or (m, C) with m >= 2, got {tuple(y.shape)}")
    if (y.var(dim=0, correction=0) == 0).any():
        raise ValueError("a channel of y is constant: sigma = 0 and BN is undefined at eps = 0")
    params = []
    for name, p in (("gamma", gamma), ("beta", beta)):
        p = torch.as_tensor(p, dtype=torch.float64, device=y.device).detach()
        if p.ndim > 1 or p.numel() not in (1, y.shape[1]):
            raise ValueError(f"{name} must be a float or ({y.shape[1]},), got {tuple(p.shape)}")
        params.append(p.expand(y.shape[1]).clone())  # (C,)
    return y.requires_grad_(True), params[0], params[1]


def bn_forward_exact(y: Tensor, gamma: Tensor, beta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Train-mode Batch Norm with eps = 0, per column (Ioffe & Szegedy 2015):

        z = gamma y_hat + beta,   y_hat = (y - mu) / sigma,   sigma^2 = mean((y - mu)^2).

    Args:
        y: (m, C) pre-activations, one column per channel.
        gamma, beta: (C,) affine parameters.

    Returns:
        z (m, C), y_hat (m, C) and sigma (C,), all differentiable.
    """
    var, mean = torch.var_mean(y, dim=0, correction=0)  # (C,)
    sigma = var.sqrt()
    y_hat = (y - mean) / sigma  # (m, C)
    return gamma * y_hat + beta, y_hat, sigma


def _under_test(bn: Forward | None, gamma: Tensor, beta: Tensor) -> Forward:
    """The BN whose derivatives form the left-hand side: `bn`, or the explicit forward."""
    return bn if bn is not None else (lambda y: bn_forward_exact(y, gamma, beta)[0])


def _oracle(
    y: Tensor, gamma: Tensor, beta: Tensor, loss_of_z: Loss, create_graph: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The right-hand sides' ingredients from the explicit forward on a fresh leaf of y:
    v = grad_y L (m, C), z (m, C), g = dL/dz (m, C) at that z, y_hat (m, C), sigma (C,).
    With `create_graph`, g keeps its graph through a leaf z (for H = d^2 L / dz^2)."""
    y0 = y.detach().requires_grad_(True)
    z0, y_hat, sigma = bn_forward_exact(y0, gamma, beta)
    z_leaf = z0.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(scalar_loss(loss_of_z(z_leaf)), z_leaf, create_graph=create_graph)
    (v,) = torch.autograd.grad(z0, y0, g.detach())  # (m, C): the chain rule, J^T g
    return v, z_leaf, g, y_hat.detach(), sigma.detach()


def check_bn_grad(
    y: Tensor,
    gamma: float | Tensor,
    beta: float | Tensor,
    loss_of_z: Loss,
    *,
    bn: Forward | None = None,
    form: Literal["1/m", "1/sqrt(m)"] = "1/m",
    tol: float = 1e-10,
) -> IdentityCheck:
    """BN-GRAD (Santurkar et al. 2018, "How does batch normalization help optimization?",
    Thm 4.1), per channel j with g = dL/dz_j:

        ||grad_{y_j} L||^2 = (gamma^2 / sigma^2) (||g||^2 - <1, g>^2 / m - <g, y_hat>^2 / m).

    It holds exactly because grad_y L = (gamma / sigma) P g with P the orthogonal projector
    onto span{1, y_hat}^perp (||y_hat||^2 = m makes y_hat y_hat^T / m a projector). The paper
    prints 1/sqrt(m) on the last term; ``form="1/sqrt(m)"`` checks that version, which fails.

    Left-hand side: autograd of loss_of_z(bn(y)) with respect to y, i.e. through the BN under
    test. Right-hand side: the closed form with sigma, y_hat from the explicit forward of y and
    g = dL/dz at the explicit z (see the module doc).

    Args:
        y: (m,) or (m, C) BN inputs (train mode, biased variance, eps = 0).
        gamma, beta: floats or (C,).
        loss_of_z: maps the BN output z, shaped like y as (m, C), to a scalar loss.
        bn: the BN under test, mapping y (m, C) to z (m, C) with these gamma, beta, e.g. the
            library's `BatchNorm` (eps = 0, train mode, float64); None: `bn_forward_exact`.
        form: coefficient of <g, y_hat>^2: the correct ``"1/m"`` or the printed ``"1/sqrt(m)"``.
        tol: relative tolerance for ``holds``.

    Returns:
        The check of the worst channel.
    """
    y, gamma, beta = _bn_inputs(y, gamma, beta)  # (m, C), (C,), (C,)
    m = y.shape[0]
    z = _under_test(bn, gamma, beta)(y)
    (grad_y,) = torch.autograd.grad(scalar_loss(loss_of_z(z)), y)  # (m, C), the BN under test
    _, _, g, y_hat, sigma = _oracle(y, gamma, beta, loss_of_z, create_graph=False)
    coef = 1 / m if form == "1/m" else 1 / math.sqrt(m)
    factor = gamma**2 / sigma**2  # (C,)
    g_sq = g.square().sum(0)  # (C,)
    rhs = factor * (g_sq - g.sum(0) ** 2 / m - coef * (g * y_hat).sum(0) ** 2)
    claim = "BN-GRAD" if form == "1/m" else "BN-GRAD (printed 1/sqrt(m), expected to fail)"
    return worst_channel(claim, grad_y.square().sum(0), rhs, factor * g_sq, tol)


class BNHessTerms(NamedTuple):
    """Per-channel terms of BN-HESS, each (C,); v_j is the direction in channel j.

    lhs: v_j^T (d^2 L / dy_j^2) v_j.
    quadratic: (gamma^2 / sigma^2) v_j^T H_jj v_j, H_jj = d^2 L / dz_j^2.
    curvature: (gamma / (m sigma^2)) <g_j, y_hat_j> ||v_j||^2.
    exact: the right-hand side that holds for any v_j (see `bn_hess_terms`).
    """

    lhs: Tensor
    quadratic: Tensor
    curvature: Tensor
    exact: Tensor


def _hvp(grad: Tensor, inputs: Tensor, vec: Tensor) -> Tensor:
    """(d grad / d inputs) vec; zero when `grad` does not depend on `inputs` (linear loss)."""
    if not grad.requires_grad:
        return torch.zeros_like(inputs)
    (out,) = torch.autograd.grad(
        grad, inputs, vec, retain_graph=True, allow_unused=True, materialize_grads=True
    )
    return out


def bn_hess_terms(
    y: Tensor,
    gamma: float | Tensor,
    beta: float | Tensor,
    loss_of_z: Loss,
    direction: Tensor | None = None,
    *,
    bn: Forward | None = None,
) -> BNHessTerms:
    """Both sides of BN-HESS per channel, for v = grad_y L (the claim) or any `direction`.

    With P v = v_c - a y_hat, v_c = v - mean(v) 1, a = <y_hat, v> / m, the chain rule gives,
    exactly and for any v (derivation: D y_hat[v] = P v / sigma, and
    D^2 y_hat[v, v] = -(2 a v_c + (||v_c||^2 / m - 3 a^2) y_hat) / sigma^2):

        v^T (d^2 L / dy^2) v = (gamma^2 / sigma^2) (P v)^T H (P v)
              - (gamma / sigma^2) (2 a <g, v_c> + (||v_c||^2 / m - 3 a^2) <g, y_hat>).

    For v orthogonal to 1 and y_hat (a = 0, v_c = P v = v), which v = grad_y L = (gamma / sigma)
    P g is, this is exactly Thm 4.2 as printed: quadratic - curvature. Channels are treated one at
    a time (the diagonal blocks H_jj and d^2 L / dy_j^2, as in the paper); a joint direction
    over several channels adds the cross-channel blocks of H.

    ``lhs`` is differentiated twice through the BN under test, along its own v = grad_y L;
    the other terms come from the explicit forward (its v = grad_y L, sigma, y_hat, and g, H at
    its z), so they are the oracle a wrong BN disagrees with.

    Args:
        y, gamma, beta, loss_of_z, bn: as in `check_bn_grad`.
        direction: (m, C) or (m,) direction, or None for v = grad_y L.
    """
    y, gamma, beta = _bn_inputs(y, gamma, beta)  # (m, C), (C,), (C,)
    m, channels = y.shape
    z = _under_test(bn, gamma, beta)(y)
    (grad_y,) = torch.autograd.grad(scalar_loss(loss_of_z(z)), y, create_graph=True)  # (m, C)
    # the oracle; H = d^2 L / dz^2 through a fresh leaf z, so only the downstream graph counts
    v_exact, z_leaf, g, y_hat, sigma = _oracle(y, gamma, beta, loss_of_z, create_graph=True)
    fixed = None if direction is None else direction.detach().to(y).reshape(y.shape)
    u = grad_y.detach() if fixed is None else fixed  # the direction of the left-hand side
    v = v_exact if fixed is None else fixed  # the direction of the right-hand side
    g_val = g.detach()
    v_c = v - v.mean(0)  # (m, C)
    a = (y_hat * v).sum(0) / m  # (C,)
    pv = v_c - a * y_hat  # (m, C)
    lhs, vhv, phpv = (y.new_zeros(channels).detach() for _ in range(3))
    for j in range(channels):
        e, eu, pe = (torch.zeros_like(v) for _ in range(3))  # (m, C), only column j set
        e[:, j], eu[:, j], pe[:, j] = v[:, j], u[:, j], pv[:, j]
        lhs[j] = (eu * _hvp(grad_y, y, eu)).sum()
        vhv[j] = (e * _hvp(g, z_leaf, e)).sum()
        phpv[j] = (pe * _hvp(g, z_leaf, pe)).sum()
    g_yhat = (g_val * y_hat).sum(0)  # (C,)
    curvature = gamma / (m * sigma**2) * g_yhat * v.square().sum(0)
    extra = 2 * a * (g_val * v_c).sum(0) + (v_c.square().sum(0) / m - 3 * a**2) * g_yhat
    exact = gamma**2 / sigma**2 * phpv - gamma / sigma**2 * extra
    return BNHessTerms(lhs, gamma**2 / sigma**2 * vhv, curvature, exact)


def check_bn_hess(
    y: Tensor,
    gamma: float | Tensor,
    beta: float | Tensor,
    loss_of_z: Loss,
    *,
    bn: Forward | None = None,
    tol: float = 1e-10,
) -> IdentityCheck:
    """BN-HESS (Santurkar et al. 2018, Thm 4.2) for v = grad_{y_j} L, per channel j:

        v^T (d^2 L / dy_j^2) v = (gamma^2 / sigma^2) v^T H_jj v
                                 - (gamma / (m sigma^2)) <g_j, y_hat_j> ||v||^2,

    with H_jj = d^2 L / dz_j^2 the Hessian at the BN output. Holds exactly as printed: the
    first term is the Gauss-Newton part (P v = v), the second is <g, gamma D^2 y_hat[v, v]>,
    which reduces to it because v is orthogonal to 1 and y_hat (see `bn_hess_terms` for the
    general-direction form, where the printed one fails).

    Left-hand side through the BN under test, right-hand side on the explicit forward (see
    `bn_hess_terms`).

    Args:
        y, gamma, beta, loss_of_z, bn: as in `check_bn_grad`.
        tol: relative tolerance for ``holds``; the scale is |quadratic| + |curvature|.

    Returns:
        The check of the worst channel.
    """
    t = bn_hess_terms(y, gamma, beta, loss_of_z, bn=bn)
    scale = t.quadratic.abs() + t.curvature.abs()
    return worst_channel("BN-HESS", t.lhs, t.quadratic - t.curvature, scale, tol)
