"""BN-GRAD and BN-HESS: both sides agree in float64, the printed 1/sqrt(m) form of BN-GRAD and
the wrong variants of BN-HESS fail, the explicit eps = 0 forward matches the library's
BatchNorm, and with the library's BatchNorm as the BN under test the checks hold while a BN
with a wrong statistic fails them."""

import pytest
import torch
import torch.nn.functional as F
from identity_problems import SEEDS, TINY_EPS, TOL, generator, randn

from normtheory.measure.identities_bn import (
    bn_forward_exact,
    bn_hess_terms,
    check_bn_grad,
    check_bn_hess,
)
from normtheory.norms import build_norm

BATCHES = [4, 16, 64]
CHANNELS = [1, 3]


pytestmark = pytest.mark.usefixtures("one_thread")


def _bn_problem(seed: int, m: int, channels: int):
    """y (m, C) with non-zero means, gamma of both signs, and a nonlinear head so H != 0."""
    gen = generator(seed)
    y = 2.0 * randn(gen, m, channels) + randn(gen, channels)
    gamma, beta = 1.5 * randn(gen, channels), randn(gen, channels)
    w2, bias = randn(gen, 3, channels), randn(gen, 3)
    targets = torch.randint(3, (m,), generator=gen)

    def head(z: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(torch.tanh(z) @ w2.T + bias, targets) + z.pow(3).mean()

    return y, gamma, beta, head


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("m", BATCHES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_bn_grad_holds_and_printed_form_fails(seed, m, channels):
    y, gamma, beta, head = _bn_problem(seed, m, channels)
    check = check_bn_grad(y, gamma, beta, head, tol=TOL)
    assert check.holds and check.rel_error <= TOL and check.claim == "BN-GRAD", check
    printed = check_bn_grad(y, gamma, beta, head, form="1/sqrt(m)", tol=TOL)
    assert not printed.holds and printed.rel_error > 1e-3, printed


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("m", BATCHES)
def test_bn_grad_accepts_one_channel_vector_and_float_params(seed, m):
    y, _, _, head = _bn_problem(seed, m, 1)
    check = check_bn_grad(y[:, 0], 0.7, -0.2, head)
    assert check.holds and check.detail == "worst channel 0 of 1", check


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("m", BATCHES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_bn_hess_holds_exactly_as_printed(seed, m, channels):
    y, gamma, beta, head = _bn_problem(seed, m, channels)
    check = check_bn_hess(y, gamma, beta, head, tol=TOL)
    assert check.holds and check.rel_error <= TOL and check.claim == "BN-HESS", check


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("m", BATCHES)
def test_bn_hess_fails_without_the_curvature_term_or_with_its_sign_flipped(seed, m):
    y, gamma, beta, head = _bn_problem(seed, m, 3)
    t = bn_hess_terms(y, gamma, beta, head)
    assert (t.curvature.abs() > 1e-3 * t.quadratic.abs()).all()  # the term is not negligible
    scale = t.quadratic.abs() + t.curvature.abs()
    for wrong in (t.quadratic, t.quadratic + t.curvature):
        assert ((t.lhs - wrong).abs() / scale > 1e-3).all()
    assert ((t.lhs - t.exact).abs() / scale <= TOL).all()  # the general form agrees too


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("m", BATCHES)
def test_bn_hess_printed_form_needs_v_orthogonal_to_one_and_y_hat(seed, m):
    """A generic direction breaks the printed form; the general exact form still holds."""
    y, gamma, beta, head = _bn_problem(seed, m, 3)
    direction = randn(generator(seed + 100), m, 3) + 0.5
    t = bn_hess_terms(y, gamma, beta, head, direction=direction)
    scale = t.lhs.abs() + t.quadratic.abs() + t.curvature.abs()
    assert ((t.lhs - (t.quadratic - t.curvature)).abs() / scale).max() > 1e-3
    assert ((t.lhs - t.exact).abs() / scale <= TOL).all()


def test_bn_hess_linear_loss_has_zero_hessian_terms():
    y, gamma, beta, _ = _bn_problem(0, 16, 2)
    coef = randn(generator(5), 16, 2)
    t = bn_hess_terms(y, gamma, beta, lambda z: (coef * z).sum())
    assert torch.equal(t.quadratic, torch.zeros(2, dtype=torch.float64))
    assert check_bn_hess(y, gamma, beta, lambda z: (coef * z).sum()).holds


def test_checks_reject_bad_inputs():
    y, gamma, beta, head = _bn_problem(0, 8, 2)
    with pytest.raises(ValueError, match="constant"):
        check_bn_grad(torch.ones(8, 2), gamma, beta, head)
    with pytest.raises(ValueError, match="gamma"):
        check_bn_grad(y, torch.ones(3), beta, head)
    with pytest.raises(ValueError, match="scalar"):
        check_bn_grad(y, gamma, beta, lambda z: z)


# The explicit eps = 0 forwards are the layers the library trains.


def _library_bn(channels: int, gamma: torch.Tensor, beta: torch.Tensor):
    layer = build_norm("batch", channels, eps=TINY_EPS).double().train()
    with torch.no_grad():
        layer.weight.copy_(gamma)
        layer.bias.copy_(beta)
    return layer


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(16, 3), (4, 3, 5), (2, 3, 4, 4)])
def test_explicit_bn_matches_library_batch_norm_values_gradients_and_hvps(seed, shape):
    gen = generator(seed)
    x = 2.0 * randn(gen, *shape) + 0.5
    gamma, beta, coef, v = randn(gen, 3), randn(gen, 3), randn(gen, *shape), randn(gen, *shape)
    layer = _library_bn(3, gamma, beta)

    def explicit(t: torch.Tensor) -> torch.Tensor:  # (N, C, *S) via (m, C) columns
        cols = t.movedim(1, -1).reshape(-1, 3)  # (m, C)
        z = bn_forward_exact(cols, gamma, beta)[0]
        return z.reshape(t.movedim(1, -1).shape).movedim(-1, 1)

    outs = []
    for fn in (layer, explicit):
        t = x.clone().requires_grad_(True)
        out = fn(t)
        (grad,) = torch.autograd.grad((coef * torch.tanh(out)).sum(), t, create_graph=True)
        (hvp,) = torch.autograd.grad(grad, t, v)
        outs.append((out.detach(), grad.detach(), hvp))
    for lib, exact in zip(*outs):
        torch.testing.assert_close(lib, exact, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5), (4, 3, 2, 2)])
def test_library_batch_norm_with_eps_zero_is_exact_in_train_mode(shape):
    """Regression: torch's F.batch_norm rejects eps=0 in training, so build_norm("batch",
    eps=0.0) used to fail on its first forward; BatchNorm now computes the ε = 0 map itself,
    with the same running-statistics update as with a tiny positive ε."""
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = build_norm("batch", 3, eps=0.0).double().train()
    tiny = build_norm("batch", 3, eps=5e-324).double().train()
    torch.testing.assert_close(exact(x), tiny(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(exact.running_var, tiny.running_var, rtol=1e-14, atol=0)
    torch.testing.assert_close(exact.running_mean, tiny.running_mean, rtol=1e-14, atol=0)
    y, _, _ = bn_forward_exact(
        x.transpose(0, 1).reshape(3, -1).T,
        torch.ones(3, dtype=torch.float64),
        torch.zeros(3, dtype=torch.float64),
    )
    torch.testing.assert_close(exact(x).transpose(0, 1).reshape(3, -1).T, y, rtol=1e-12, atol=1e-12)


# The BN under test (``bn=``): the left-hand side runs through it, the right-hand side stays on
# the explicit forward, so a wrong BN fails both checks.


def _wrong_bn(gamma: torch.Tensor, beta: torch.Tensor, kind: str):
    """(m, C) -> z of a BN with one slip: the unbiased variance, or no centering."""

    def forward(y: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(y, dim=0, correction=1 if kind == "unbiased" else 0)
        return gamma * ((y - mean) if kind == "unbiased" else y) / var.sqrt() + beta

    return forward


@pytest.mark.parametrize("seed", SEEDS)
def test_checks_through_library_batch_norm_hold(seed):
    y, gamma, beta, head = _bn_problem(seed, 16, 3)
    layer = build_norm("batch", 3, eps=0.0).double().train()
    with torch.no_grad():
        layer.weight.copy_(gamma)
        layer.bias.copy_(beta)
    for check in (
        check_bn_grad(y, gamma, beta, head, bn=layer, tol=TOL),
        check_bn_hess(y, gamma, beta, head, bn=layer, tol=TOL),
    ):
        assert check.holds and check.rel_error <= TOL, check


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["unbiased", "uncentered"])
def test_checks_through_a_wrong_batch_norm_fail(seed, kind):
    y, gamma, beta, head = _bn_problem(seed, 16, 3)
    wrong = _wrong_bn(gamma, beta, kind)
    for check in (
        check_bn_grad(y, gamma, beta, head, bn=wrong, tol=TOL),
        check_bn_hess(y, gamma, beta, head, bn=wrong, tol=TOL),
    ):
        assert not check.holds and check.rel_error > 1e-3, check
