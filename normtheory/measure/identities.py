"""Exact identities of normalization layers, both sides computed: BN-GRAD, BN-HESS, WS-GRAD,
SI-ORTH (see CLAIMS.md).

Each check takes the left-hand side from autograd through an explicit float64 forward with
eps = 0 (`bn_forward_exact`, `ws_forward_exact`) and the right-hand side from the paper's closed
form, and returns an `IdentityCheck`. Inputs are detached and cast to float64; loss callables
must accept float64 tensors. `run_exact_checks` builds small random problems for
``normtheory verify``. Nothing here touches ``.grad``, module state or the global RNG.

Notation: m = batch size, y = one channel's BN input (m,), y_hat = (y - mu) / sigma with the
biased sigma (so <1, y_hat> = 0 and ||y_hat||^2 = m), z = gamma y_hat + beta, g = dL/dz.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

Loss = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class IdentityCheck:
    """Both sides of one exact identity and whether they agree.

    Attributes:
        claim: claim id, e.g. ``"BN-GRAD"``; a variant the tests expect to fail says so.
        lhs: left-hand side (for per-channel identities: of the worst channel).
        rhs: right-hand side, same channel.
        rel_error: |lhs - rhs| / max(|lhs|, |rhs|, largest term), so cancellation between the
            terms of a side cannot inflate it; for vector identities the relative error of the
            whole vector (see `check_si_orth`).
        holds: ``rel_error <= tol`` (False for NaN).
        detail: which channel or which half of the claim.
    """

    claim: str
    lhs: float
    rhs: float
    rel_error: float
    holds: bool
    detail: str = ""


def _rel_error(lhs: Tensor, rhs: Tensor, scale: Tensor) -> Tensor:
    denom = torch.maximum(torch.maximum(lhs.abs(), rhs.abs()), scale.abs())
    err = (lhs - rhs).abs()
    # denom == 0 forces lhs == rhs == 0, hence err == 0
    return torch.where(err == 0, torch.zeros_like(err), err / denom)


def _worst_channel(
    claim: str, lhs: Tensor, rhs: Tensor, scale: Tensor, tol: float
) -> IdentityCheck:
    rel = _rel_error(lhs, rhs, scale)  # (C,)
    j = int(torch.nan_to_num(rel, nan=math.inf).argmax())
    err = float(rel[j])
    detail = f"worst channel {j} of {len(rel)}"
    return IdentityCheck(claim, float(lhs[j]), float(rhs[j]), err, err <= tol, detail)


def _scalar(loss: Tensor) -> Tensor:
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError(f"the loss callable must return a scalar tensor, got {loss!r}")
    return loss.reshape(())


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


def ws_forward_exact(weight: Tensor, correction: int = 0) -> tuple[Tensor, Tensor]:
    """Weight Standardization with eps = 0 (Qiao et al. 2019, Eq. 5), per output channel:

        W_hat_o = (W_o - mu_o) / sigma_o,   sigma_o^2 = sum((W_o - mu_o)^2) / (I - correction).

    Args:
        weight: (O, I...) with fan-in I = prod of the other dims.
        correction: 0 for the biased sigma of the claim, 1 for ``Tensor.std``'s unbiased one
            (what the authors' reference code uses).

    Returns:
        W_hat (O, I) flattened and sigma (O,), both differentiable.
    """
    flat = weight.reshape(weight.shape[0], -1)  # (O, I)
    var, mean = torch.var_mean(flat, dim=1, correction=correction, keepdim=True)  # (O, 1)
    sigma = var.sqrt()
    return (flat - mean) / sigma, sigma[:, 0]


def check_bn_grad(
    y: Tensor,
    gamma: float | Tensor,
    beta: float | Tensor,
    loss_of_z: Loss,
    *,
    form: Literal["1/m", "1/sqrt(m)"] = "1/m",
    tol: float = 1e-10,
) -> IdentityCheck:
    """BN-GRAD (Santurkar et al. 2018, "How does batch normalization help optimization?",
    Thm 4.1), per channel j with g = dL/dz_j:

        ||grad_{y_j} L||^2 = (gamma^2 / sigma^2) (||g||^2 - <1, g>^2 / m - <g, y_hat>^2 / m).

    It holds exactly because grad_y L = (gamma / sigma) P g with P the orthogonal projector
    onto span{1, y_hat}^perp (||y_hat||^2 = m makes y_hat y_hat^T / m a projector). The paper
    prints 1/sqrt(m) on the last term; ``form="1/sqrt(m)"`` checks that version, which fails.

    Args:
        y: (m,) or (m, C) BN inputs (train mode, biased variance, eps = 0).
        gamma, beta: floats or (C,).
        loss_of_z: maps the BN output z, shaped like y as (m, C), to a scalar loss.
        form: coefficient of <g, y_hat>^2: the correct ``"1/m"`` or the printed ``"1/sqrt(m)"``.
        tol: relative tolerance for ``holds``.

    Returns:
        The check of the worst channel.
    """
    y, gamma, beta = _bn_inputs(y, gamma, beta)  # (m, C), (C,), (C,)
    m = y.shape[0]
    z, y_hat, sigma = bn_forward_exact(y, gamma, beta)
    grad_y, g = torch.autograd.grad(_scalar(loss_of_z(z)), (y, z))  # (m, C) each
    y_hat, sigma = y_hat.detach(), sigma.detach()
    coef = 1 / m if form == "1/m" else 1 / math.sqrt(m)
    factor = gamma**2 / sigma**2  # (C,)
    g_sq = g.square().sum(0)  # (C,)
    rhs = factor * (g_sq - g.sum(0) ** 2 / m - coef * (g * y_hat).sum(0) ** 2)
    claim = "BN-GRAD" if form == "1/m" else "BN-GRAD (printed 1/sqrt(m), expected to fail)"
    return _worst_channel(claim, grad_y.square().sum(0), rhs, factor * g_sq, tol)


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

    Args:
        y, gamma, beta, loss_of_z: as in `check_bn_grad`.
        direction: (m, C) or (m,) direction, or None for v = grad_y L.
    """
    y, gamma, beta = _bn_inputs(y, gamma, beta)  # (m, C), (C,), (C,)
    m, channels = y.shape
    z, y_hat, sigma = bn_forward_exact(y, gamma, beta)
    (grad_y,) = torch.autograd.grad(_scalar(loss_of_z(z)), y, create_graph=True)  # (m, C)
    v = grad_y.detach() if direction is None else direction.detach().to(y).reshape(y.shape)
    # H = d^2 L / dz^2 at the same z, through a fresh leaf so only the downstream graph counts
    z_leaf = z.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(_scalar(loss_of_z(z_leaf)), z_leaf, create_graph=True)
    y_hat, sigma, g_val = y_hat.detach(), sigma.detach(), g.detach()
    v_c = v - v.mean(0)  # (m, C)
    a = (y_hat * v).sum(0) / m  # (C,)
    pv = v_c - a * y_hat  # (m, C)
    lhs, vhv, phpv = (y.new_zeros(channels).detach() for _ in range(3))
    for j in range(channels):
        e, pe = torch.zeros_like(v), torch.zeros_like(v)  # (m, C), only column j set
        e[:, j], pe[:, j] = v[:, j], pv[:, j]
        lhs[j] = (e * _hvp(grad_y, y, e)).sum()
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
    tol: float = 1e-10,
) -> IdentityCheck:
    """BN-HESS (Santurkar et al. 2018, Thm 4.2) for v = grad_{y_j} L, per channel j:

        v^T (d^2 L / dy_j^2) v = (gamma^2 / sigma^2) v^T H_jj v
                                 - (gamma / (m sigma^2)) <g_j, y_hat_j> ||v||^2,

    with H_jj = d^2 L / dz_j^2 the Hessian at the BN output. Holds exactly as printed: the
    first term is the Gauss-Newton part (P v = v), the second is <g, gamma D^2 y_hat[v, v]>,
    which reduces to it because v is orthogonal to 1 and y_hat (see `bn_hess_terms` for the
    general-direction form, where the printed one fails).

    Args:
        y, gamma, beta, loss_of_z: as in `check_bn_grad`.
        tol: relative tolerance for ``holds``; the scale is |quadratic| + |curvature|.

    Returns:
        The check of the worst channel.
    """
    t = bn_hess_terms(y, gamma, beta, loss_of_z)
    scale = t.quadratic.abs() + t.curvature.abs()
    return _worst_channel("BN-HESS", t.lhs, t.quadratic - t.curvature, scale, tol)


def check_ws_grad(
    weight: Tensor, loss_of_w_hat: Loss, *, correction: int = 0, tol: float = 1e-10
) -> IdentityCheck:
    """WS-GRAD (Qiao et al. 2019, "Weight Standardization", Sec. 3.1), per output channel o
    with fan-in I and g = dL/dW_hat_o:

        ||grad_{W_o} L||^2 = (1 / sigma_o^2) (||g||^2 - <1, g>^2 / I - <W_hat_o, g>^2 / I).

    Exact for the biased sigma (eps = 0), by the same projector argument as BN-GRAD. With the
    unbiased sigma (``correction=1``, the authors' reference code) ||W_hat||^2 = I - 1 and the
    printed form fails (the exact one then has <W_hat, g>^2 / (I - 1)).

    Args:
        weight: (O, I...) raw weight, e.g. (O, C, k, k) for a conv or (O, I) for a linear layer.
        loss_of_w_hat: maps the standardized weight (same shape as `weight`) to a scalar loss.
        correction: variance correction of the standardization (0 is the claim's).
        tol: relative tolerance for ``holds``.

    Returns:
        The check of the worst output channel.
    """
    w = weight.detach().to(torch.float64).requires_grad_(True)
    w_hat_flat, sigma = ws_forward_exact(w, correction)  # (O, I), (O,)
    w_hat = w_hat_flat.reshape(w.shape)
    grad_w, g = torch.autograd.grad(_scalar(loss_of_w_hat(w_hat)), (w, w_hat))
    grad_w, g = grad_w.reshape(w_hat_flat.shape), g.reshape(w_hat_flat.shape)  # (O, I)
    fan_in, w_hat_flat, sigma = g.shape[1], w_hat_flat.detach(), sigma.detach()
    g_sq = g.square().sum(1)  # (O,)
    rhs = (g_sq - g.sum(1) ** 2 / fan_in - (w_hat_flat * g).sum(1) ** 2 / fan_in) / sigma**2
    claim = "WS-GRAD" if correction == 0 else "WS-GRAD (unbiased sigma, expected to fail)"
    return _worst_channel(claim, grad_w.square().sum(1), rhs, g_sq / sigma**2, tol)


def _ratio(num: Tensor, denom: Tensor) -> float:
    """num / denom, and 0 for 0 / 0 (a zero gradient satisfies both SI-ORTH identities)."""
    return 0.0 if float(num) == 0 else float(num / denom)


def _grad(loss_of_weight: Loss, weight: Tensor) -> Tensor:
    w = weight.detach().requires_grad_(True)
    return torch.autograd.grad(_scalar(loss_of_weight(w)), w)[0]


def check_si_orth(
    weight: Tensor, loss_of_weight: Loss, *, c: float = 2.5, tol: float = 1e-10
) -> list[IdentityCheck]:
    """SI-ORTH (Liu et al. 2021; also van Laarhoven 2017): a scale-invariant weight, L(c w) = L(w)
    for c > 0 (e.g. one feeding train-mode BN with eps = 0), has

        <w, grad L(w)> = 0              (Euler's theorem for degree-0 homogeneity),
        grad L(c w) = grad L(w) / c     (the gradient is homogeneous of degree -1).

    Args:
        weight: the weight, any shape.
        loss_of_weight: maps a float64 weight of that shape to a scalar loss.
        c: the rescaling factor of the second identity.
        tol: tolerance for ``holds``.

    Returns:
        Two checks. Orthogonality: lhs = <w, grad L>, rhs = 0, rel_error = |<w, grad L>| /
        (||w|| ||grad L||) (a cosine). Homogeneity: lhs = ||grad L(c w)||, rhs = ||grad L(w)|| / c,
        rel_error = ||grad L(c w) - grad L(w) / c|| / max of the two norms.
    """
    w = weight.detach().to(torch.float64)
    grad, grad_c = _grad(loss_of_weight, w), _grad(loss_of_weight, c * w)
    inner = (w * grad).sum()
    cos = _ratio(inner.abs(), w.norm() * grad.norm())
    lhs_c, rhs_c = grad_c.norm(), (grad / c).norm()
    err_c = _ratio((grad_c - grad / c).norm(), torch.maximum(lhs_c, rhs_c))
    orth = IdentityCheck("SI-ORTH", float(inner), 0.0, cos, cos <= tol, "<w, grad L(w)> = 0")
    detail = f"grad L({c:g} w) = grad L(w) / {c:g}"
    homog = IdentityCheck("SI-ORTH", float(lhs_c), float(rhs_c), err_c, err_c <= tol, detail)
    return [orth, homog]


def run_exact_checks(seed: int = 0) -> list[IdentityCheck]:
    """BN-GRAD, BN-HESS, WS-GRAD and SI-ORTH on small random float64 problems (milliseconds).

    BN: x (16, 5) -> y = x W1^T (16, 4) -> BN (eps = 0, random gamma, beta) -> tanh -> W2 ->
    cross-entropy over 3 classes, so H != 0 and <g, y_hat> != 0. WS: a (4, 3, 3, 3) conv weight
    under a softplus-squared loss. SI-ORTH: W1, which feeds the BN. Uses its own generator, so
    the global RNG state is untouched.
    """
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    m, d, channels, classes = 16, 5, 4, 3
    x, w1, w2 = randn(m, d), randn(channels, d), randn(classes, channels)
    gamma, beta = 1 + 0.5 * randn(channels), 0.5 * randn(channels)
    targets = torch.randint(classes, (m,), generator=gen)

    def head(z: Tensor) -> Tensor:  # z (m, C) -> scalar
        return F.cross_entropy(torch.tanh(z) @ w2.T, targets)

    def through_bn(w: Tensor) -> Tensor:
        return head(bn_forward_exact(x @ w.T, gamma, beta)[0])

    images, conv_w = randn(2, 3, 6, 6), randn(4, 3, 3, 3)

    def conv_loss(w_hat: Tensor) -> Tensor:
        return F.softplus(F.conv2d(images, w_hat)).square().mean()

    y = x @ w1.T  # (m, C)
    return [
        check_bn_grad(y, gamma, beta, head),
        check_bn_hess(y, gamma, beta, head),
        check_ws_grad(conv_w, conv_loss),
        *check_si_orth(w1, through_bn),
    ]
