"""The exact identities of a scale-invariant weight, both sides computed: SI-ORTH (CLAIMS.md).

The measurements of the same identities along training are in `normtheory.measure.weights`.
"""

import torch
from torch import Tensor

from normtheory.measure.identity_check import IdentityCheck, Loss, scalar_loss


def _ratio(num: Tensor, denom: Tensor) -> float:
    """num / denom, and 0 for 0 / 0 (a zero gradient satisfies both SI-ORTH identities)."""
    return 0.0 if float(num) == 0 else float(num / denom)


def _grad(loss_of_weight: Loss, weight: Tensor) -> Tensor:
    w = weight.detach().requires_grad_(True)
    return torch.autograd.grad(scalar_loss(loss_of_weight(w)), w)[0]


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
