"""WS-GRAD: both sides agree in float64 for the biased sigma, the unbiased sigma fails, the
explicit eps = 0 standardization matches the library's, and the check through the library's WS
layers holds while one through a wrong standardization fails."""

import pytest
import torch
import torch.nn.functional as F
from identity_problems import SEEDS, TOL, generator, randn
from torch.func import functional_call

from normtheory.measure.identities_ws import check_ws_grad, ws_forward_exact
from normtheory.norms import WSConv2d, WSLinear, standardize_weight

WEIGHT_SHAPES = [(4, 3, 3, 3), (5, 7)]


pytestmark = pytest.mark.usefixtures("one_thread")


def _ws_problem(seed: int, shape: tuple[int, ...]):
    gen = generator(seed)
    weight = 0.1 * randn(gen, *shape) + 0.03
    if len(shape) == 4:
        x = randn(gen, 2, shape[1], 6, 6)

        def loss(w_hat: torch.Tensor) -> torch.Tensor:
            return F.softplus(F.conv2d(x, w_hat)).square().mean()
    else:
        x = randn(gen, 6, shape[1])

        def loss(w_hat: torch.Tensor) -> torch.Tensor:
            return torch.tanh(x @ w_hat.T).pow(2).sum()

    return weight, loss


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", WEIGHT_SHAPES)
def test_ws_grad_holds_for_biased_sigma_and_fails_for_unbiased(seed, shape):
    weight, loss = _ws_problem(seed, shape)
    check = check_ws_grad(weight, loss, tol=TOL)
    assert check.holds and check.rel_error <= TOL and check.claim == "WS-GRAD", check
    unbiased = check_ws_grad(weight, loss, correction=1, tol=TOL)
    assert not unbiased.holds and unbiased.rel_error > 1e-6, unbiased


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", WEIGHT_SHAPES)
def test_explicit_ws_matches_library_standardize_weight(seed, shape):
    weight, loss = _ws_problem(seed, shape)
    outs = []
    for fn in (
        lambda w: standardize_weight(w, eps=0.0),
        lambda w: ws_forward_exact(w)[0].reshape(w.shape),
    ):
        w = weight.clone().requires_grad_(True)
        w_hat = fn(w)
        outs.append((w_hat.detach(), torch.autograd.grad(loss(w_hat), w)[0]))
    for lib, exact in zip(*outs):
        torch.testing.assert_close(lib, exact, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", WEIGHT_SHAPES)
def test_ws_grad_through_the_library_layer_holds_and_through_a_wrong_one_fails(seed, shape):
    """``loss_of_weight`` is the left-hand side: the library's WS layer (ws_eps = 0) passes, a
    standardization with the unbiased σ and ε outside the root does not."""
    weight, _ = _ws_problem(seed, shape)
    if len(shape) == 4:
        layer = WSConv2d(shape[1], shape[0], shape[2], bias=False, ws_eps=0.0).double()
    else:
        layer = WSLinear(shape[1], shape[0], bias=False, ws_eps=0.0).double()
    gen = generator(seed + 10)
    x = randn(gen, 2, shape[1], 6, 6) if len(shape) == 4 else randn(gen, 6, shape[1])
    op = F.conv2d if len(shape) == 4 else F.linear

    def plain(w_hat: torch.Tensor) -> torch.Tensor:
        return torch.tanh(op(x, w_hat)).square().sum()

    def library(w: torch.Tensor) -> torch.Tensor:
        return torch.tanh(functional_call(layer, {"weight": w}, (x,))).square().sum()

    def wrong(w: torch.Tensor) -> torch.Tensor:
        flat = w.reshape(len(w), -1)
        w_hat = (flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-5)
        return plain(w_hat.reshape(w.shape))

    check = check_ws_grad(weight, plain, loss_of_weight=library, tol=TOL)
    assert check.holds and check.rel_error <= TOL, check
    bad = check_ws_grad(weight, plain, loss_of_weight=wrong, tol=TOL)
    assert not bad.holds and bad.rel_error > 1e-6, bad
