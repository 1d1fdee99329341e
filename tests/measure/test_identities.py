"""Exact identities (BN-GRAD, BN-HESS, WS-GRAD, SI-ORTH): both sides agree in float64, the
wrong variants fail, and the explicit eps = 0 forwards match the library's own layers."""

import sys

import pytest
import torch
import torch.nn.functional as F

from normtheory.measure.identities import (
    IdentityCheck,
    bn_forward_exact,
    bn_hess_terms,
    check_bn_grad,
    check_bn_hess,
    check_si_orth,
    check_ws_grad,
    run_exact_checks,
    ws_forward_exact,
)
from normtheory.norms import build_norm, standardize_weight

TOL = 1e-10
SEEDS = [0, 1, 2]
BATCHES = [4, 16, 64]
CHANNELS = [1, 3]
WEIGHT_SHAPES = [(4, 3, 3, 3), (5, 7)]
# F.batch_norm rejects eps = 0 in train mode; the smallest positive double leaves var + eps == var
# bit for bit for any var > 1e-290, so the library layer then computes the eps = 0 map.
TINY_EPS = sys.float_info.min * sys.float_info.epsilon


pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def _bn_problem(seed: int, m: int, channels: int):
    """y (m, C) with non-zero means, gamma of both signs, and a nonlinear head so H != 0."""
    gen = _gen(seed)
    y = 2.0 * _randn(gen, m, channels) + _randn(gen, channels)
    gamma, beta = 1.5 * _randn(gen, channels), _randn(gen, channels)
    w2, bias = _randn(gen, 3, channels), _randn(gen, 3)
    targets = torch.randint(3, (m,), generator=gen)

    def head(z: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(torch.tanh(z) @ w2.T + bias, targets) + z.pow(3).mean()

    return y, gamma, beta, head


def _ws_problem(seed: int, shape: tuple[int, ...]):
    gen = _gen(seed)
    weight = 0.1 * _randn(gen, *shape) + 0.03
    if len(shape) == 4:
        x = _randn(gen, 2, shape[1], 6, 6)

        def loss(w_hat: torch.Tensor) -> torch.Tensor:
            return F.softplus(F.conv2d(x, w_hat)).square().mean()
    else:
        x = _randn(gen, 6, shape[1])

        def loss(w_hat: torch.Tensor) -> torch.Tensor:
            return torch.tanh(x @ w_hat.T).pow(2).sum()

    return weight, loss


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
    direction = _randn(_gen(seed + 100), m, 3) + 0.5
    t = bn_hess_terms(y, gamma, beta, head, direction=direction)
    scale = t.lhs.abs() + t.quadratic.abs() + t.curvature.abs()
    assert ((t.lhs - (t.quadratic - t.curvature)).abs() / scale).max() > 1e-3
    assert ((t.lhs - t.exact).abs() / scale <= TOL).all()


def test_bn_hess_linear_loss_has_zero_hessian_terms():
    y, gamma, beta, _ = _bn_problem(0, 16, 2)
    coef = _randn(_gen(5), 16, 2)
    t = bn_hess_terms(y, gamma, beta, lambda z: (coef * z).sum())
    assert torch.equal(t.quadratic, torch.zeros(2, dtype=torch.float64))
    assert check_bn_hess(y, gamma, beta, lambda z: (coef * z).sum()).holds


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", WEIGHT_SHAPES)
def test_ws_grad_holds_for_biased_sigma_and_fails_for_unbiased(seed, shape):
    weight, loss = _ws_problem(seed, shape)
    check = check_ws_grad(weight, loss, tol=TOL)
    assert check.holds and check.rel_error <= TOL and check.claim == "WS-GRAD", check
    unbiased = check_ws_grad(weight, loss, correction=1, tol=TOL)
    assert not unbiased.holds and unbiased.rel_error > 1e-6, unbiased


def _si_problem(seed: int, norm: str, eps: float = TINY_EPS):
    """x (16, 5) -> x W^T (16, 4) -> library norm in train mode -> tanh -> linear -> CE."""
    gen = _gen(seed)
    x, weight, w2 = _randn(gen, 16, 5), _randn(gen, 4, 5), _randn(gen, 3, 4)
    targets = torch.randint(3, (16,), generator=gen)
    layer = build_norm(norm, 4, eps=eps) if norm != "none" else build_norm(norm, 4)
    layer = layer.double().train()
    if norm == "batch":
        with torch.no_grad():
            layer.weight.copy_(1 + 0.5 * _randn(gen, 4))
            layer.bias.copy_(0.5 * _randn(gen, 4))

    def loss(w: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(torch.tanh(layer(x @ w.T)) @ w2.T, targets)

    return weight, loss


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("c", [0.3, 2.5])
def test_si_orth_holds_for_weight_feeding_library_batch_norm(seed, c):
    weight, loss = _si_problem(seed, "batch")
    checks = check_si_orth(weight, loss, c=c, tol=TOL)
    assert len(checks) == 2 and all(ch.holds and ch.claim == "SI-ORTH" for ch in checks), checks


@pytest.mark.parametrize("seed", SEEDS)
def test_si_orth_fails_for_weight_feeding_no_norm(seed):
    weight, loss = _si_problem(seed, "none")
    orth, homog = check_si_orth(weight, loss, tol=TOL)
    assert not orth.holds and orth.rel_error > 1e-3, orth
    assert not homog.holds and homog.rel_error > 1e-3, homog


def test_si_orth_fails_with_the_default_batch_norm_eps():
    """eps = 1e-5 breaks exact scale invariance: the precondition eps = 0 matters."""
    weight, loss = _si_problem(0, "batch", eps=1e-5)
    orth, _ = check_si_orth(weight, loss, tol=TOL)
    assert not orth.holds, orth


@pytest.mark.parametrize("seed", SEEDS)
def test_run_exact_checks_all_hold(seed):
    checks = run_exact_checks(seed)
    assert all(isinstance(c, IdentityCheck) for c in checks)
    assert {c.claim for c in checks} == {"BN-GRAD", "BN-HESS", "WS-GRAD", "SI-ORTH"}
    assert all(c.holds and c.rel_error <= TOL for c in checks), checks


def test_run_exact_checks_is_deterministic_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    assert run_exact_checks(3) == run_exact_checks(3)
    assert torch.equal(torch.random.get_rng_state(), state)


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
    gen = _gen(seed)
    x = 2.0 * _randn(gen, *shape) + 0.5
    gamma, beta, coef, v = _randn(gen, 3), _randn(gen, 3), _randn(gen, *shape), _randn(gen, *shape)
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
