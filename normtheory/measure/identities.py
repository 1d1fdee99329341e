"""Exact identities of normalization layers, both sides computed: BN-GRAD, BN-HESS, WS-GRAD,
SI-ORTH (see CLAIMS.md).

Each check takes the left-hand side from autograd through an explicit float64 forward with
eps = 0 (`bn_forward_exact`, `ws_forward_exact`) and the right-hand side from the paper's closed
form, and returns an `IdentityCheck`. Inputs are detached and cast to float64; loss callables
must accept float64 tensors. `run_exact_checks` builds small random problems for
``normtheory verify``. Nothing here touches ``.grad``, module state or the global RNG.

The checks live by claim family: BN-GRAD and BN-HESS in `normtheory.measure.identities_bn`
(with the notation), WS-GRAD in `normtheory.measure.identities_ws`, SI-ORTH in
`normtheory.measure.identities_si`; this module gathers them.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from normtheory.measure.identities_bn import (
    BNHessTerms,
    bn_forward_exact,
    bn_hess_terms,
    check_bn_grad,
    check_bn_hess,
)
from normtheory.measure.identities_si import check_si_orth
from normtheory.measure.identities_ws import check_ws_grad, ws_forward_exact
from normtheory.measure.identity_check import IdentityCheck

__all__ = [
    "BNHessTerms",
    "IdentityCheck",
    "bn_forward_exact",
    "bn_hess_terms",
    "check_bn_grad",
    "check_bn_hess",
    "check_si_orth",
    "check_ws_grad",
    "run_exact_checks",
    "ws_forward_exact",
]


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
