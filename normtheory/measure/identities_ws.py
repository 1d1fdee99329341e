"""The exact identity of Weight Standardization, both sides computed: WS-GRAD (CLAIMS.md).

The left-hand side comes from autograd with respect to the raw weight through the layer under
test, ``loss_of_weight`` (the library's `WSConv2d` / `WSLinear` in ``normtheory verify``; by
default the explicit `ws_forward_exact`). The right-hand side is the paper's closed form,
always evaluated on the oracle: W_hat and sigma from `ws_forward_exact` (float64, eps = 0)
and g = dL/dW_hat at that W_hat.
"""

import torch
from torch import Tensor

from normtheory.measure.identity_check import IdentityCheck, Loss, scalar_loss, worst_channel


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


def check_ws_grad(
    weight: Tensor,
    loss_of_w_hat: Loss,
    *,
    loss_of_weight: Loss | None = None,
    correction: int = 0,
    tol: float = 1e-10,
) -> IdentityCheck:
    """WS-GRAD (Qiao et al. 2019, "Weight Standardization", Sec. 3.1), per output channel o
    with fan-in I and g = dL/dW_hat_o:

        ||grad_{W_o} L||^2 = (1 / sigma_o^2) (||g||^2 - <1, g>^2 / I - <W_hat_o, g>^2 / I).

    Exact for the biased sigma (eps = 0), by the same projector argument as BN-GRAD. With the
    unbiased sigma (``correction=1``, the authors' reference code) ||W_hat||^2 = I - 1 and the
    printed form fails (the exact one then has <W_hat, g>^2 / (I - 1)).

    Left-hand side: autograd of loss_of_weight(W) with respect to the raw W, i.e. through the
    standardization under test. Right-hand side: the closed form with W_hat, sigma from the
    explicit `ws_forward_exact` and g = d loss_of_w_hat / dW_hat at that W_hat.

    Args:
        weight: (O, I...) raw weight, e.g. (O, C, k, k) for a conv or (O, I) for a linear layer.
        loss_of_w_hat: maps the standardized weight (same shape as `weight`) to a scalar loss.
        loss_of_weight: the same loss as a function of the raw weight through the layer under
            test (e.g. the library's `WSConv2d` with ``ws_eps=0`` applied with this weight);
            None: ``loss_of_w_hat(ws_forward_exact(W, correction))``.
        correction: variance correction of the explicit standardization (0 is the claim's).
        tol: relative tolerance for ``holds``.

    Returns:
        The check of the worst output channel.
    """
    w = weight.detach().to(torch.float64).requires_grad_(True)

    def explicit(w: Tensor) -> Tensor:
        return loss_of_w_hat(ws_forward_exact(w, correction)[0].reshape(w.shape))

    under_test = explicit if loss_of_weight is None else loss_of_weight
    (grad_w,) = torch.autograd.grad(scalar_loss(under_test(w)), w)  # (O, I...)
    w_hat_flat, sigma = ws_forward_exact(w.detach(), correction)  # (O, I), (O,): the oracle
    w_hat = w_hat_flat.reshape(w.shape).requires_grad_(True)
    (g,) = torch.autograd.grad(scalar_loss(loss_of_w_hat(w_hat)), w_hat)
    grad_w, g = grad_w.reshape(w_hat_flat.shape), g.reshape(w_hat_flat.shape)  # (O, I)
    fan_in = g.shape[1]
    g_sq = g.square().sum(1)  # (O,)
    rhs = (g_sq - g.sum(1) ** 2 / fan_in - (w_hat_flat * g).sum(1) ** 2 / fan_in) / sigma**2
    claim = "WS-GRAD" if correction == 0 else "WS-GRAD (unbiased sigma, expected to fail)"
    return worst_channel(claim, grad_w.square().sum(1), rhs, g_sq / sigma**2, tol)
