"""Batch Renorm (`normtheory.norms.renorm`): BN exactly at r_max = 1, d_max = 0 (forward,
backward, running statistics, eval mode); r and d constants of the backward pass (the input
gradient against central differences of a by-hand function in which r and d are frozen); the
warm-up schedule by hand. The forward against the float64 loop oracle is in test_norms.py."""

import math

import pytest
import torch

from normtheory.norms import BatchNorm, BatchRenorm


def _pair(shape_c=4, **kw):
    gen = torch.Generator().manual_seed(0)
    brn, bn = BatchRenorm(shape_c, **kw).double(), BatchNorm(shape_c).double()
    with torch.no_grad():
        for p, q in zip(brn.parameters(), bn.parameters()):
            p.copy_(1.0 + 0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            q.copy_(p)
    return brn, bn


@pytest.mark.parametrize("renorm_steps", [0, 40000])
def test_r_max_one_d_max_zero_is_batch_norm(renorm_steps):
    brn, bn = _pair(r_max=1.0, d_max=0.0, renorm_steps=renorm_steps)
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        x = (2 * torch.randn(6, 4, 3, generator=gen, dtype=torch.float64) + 1).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        w = torch.randn(6, 4, 3, generator=gen, dtype=torch.float64)
        (brn.train()(x) * w).sum().backward()
        (bn.train()(x2) * w).sum().backward()
        torch.testing.assert_close(x.grad, x2.grad, rtol=1e-12, atol=1e-12)
    for a, b in zip(brn.parameters(), bn.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(brn.running_mean, bn.running_mean)
    torch.testing.assert_close(brn.running_var, bn.running_var)
    x = torch.randn(5, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(brn.eval()(x), bn.eval()(x))


def test_r_and_d_are_constants_of_the_backward_pass():
    """With the limits wide open the output is (x − μ)/σ with the running statistics, but the
    gradient is that of (x − μ_B)/σ_B · r + d with r, d frozen at their values: checked against
    central differences of that frozen function, computed by hand per channel."""
    brn = BatchRenorm(2, r_max=100.0, d_max=100.0, renorm_steps=0).double()
    with torch.no_grad():
        brn.running_mean.copy_(torch.tensor([0.3, -1.0], dtype=torch.float64))
        brn.running_var.copy_(torch.tensor([2.0, 0.5], dtype=torch.float64))
    mu, var, eps = brn.running_mean.tolist(), brn.running_var.tolist(), brn.eps
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(5, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    y = brn.train()(x)
    (y * w).sum().backward()
    cols = x.detach().T.tolist()

    def moments(col):
        m = math.fsum(col) / len(col)
        return m, math.sqrt(math.fsum((v - m) ** 2 for v in col) / len(col) + eps)

    frozen = []  # (r, d) per channel at the point x
    for c, col in enumerate(cols):
        m, s = moments(col)
        sigma = math.sqrt(var[c] + eps)
        frozen.append((s / sigma, (m - mu[c]) / sigma))
        expected = [(v - mu[c]) / sigma for v in col]  # unclipped: the population's output
        assert y[:, c].tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)

    def f(c, col):
        m, s = moments(col)
        r, d = frozen[c]
        return math.fsum(w[i, c].item() * ((v - m) / s * r + d) for i, v in enumerate(col))

    h = 1e-6
    for c, col in enumerate(cols):
        for i in range(len(col)):
            up, down = list(col), list(col)
            up[i] += h
            down[i] -= h
            fd = (f(c, up) - f(c, down)) / (2 * h)
            assert x.grad[i, c].item() == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_schedule_by_hand():
    brn = BatchRenorm(3, r_max=3.0, d_max=5.0, renorm_steps=800)  # warm 100, d at 500, r at 800
    assert brn.limits(0) == (1.0, 0.0)
    assert brn.limits(100) == (1.0, 0.0)
    assert brn.limits(300) == pytest.approx((1.0 + 2.0 * 200 / 700, 5.0 * 200 / 400))
    assert brn.limits(500) == pytest.approx((1.0 + 2.0 * 400 / 700, 5.0))
    assert brn.limits(800) == (3.0, 5.0) and brn.limits(10**6) == (3.0, 5.0)
    assert BatchRenorm(3, r_max=2.0, d_max=1.0, renorm_steps=0).limits(0) == (2.0, 1.0)
    brn.train()(torch.randn(4, 3))
    assert int(brn.num_batches_tracked) == 1 and brn.limits() == brn.limits(1)


@pytest.mark.parametrize(
    ("kw", "match"),
    [(dict(r_max=0.5), "r_max"), (dict(d_max=-1.0), "d_max"), (dict(renorm_steps=-1), "renorm")],
)
def test_bad_options_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        BatchRenorm(3, **kw)
