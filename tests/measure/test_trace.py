"""Hessian trace estimates (XTrace, Hutchinson, Hutch++) against the dense float64 Hessian of
`hessian_oracle`: within three standard errors, Hutch++ ahead on a decaying spectrum, early
stopping and costs; XTrace's shortcut against its definition, one leave-one-out sketch at a
time."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hessian_oracle import build, call, dense_hessian

from normtheory.measure._functional import generator
from normtheory.measure.curvature import hessian_eigenvalues
from normtheory.measure.trace import _xtrace, hessian_trace
from normtheory.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("method", ["hutchinson", "hutch++", "xtrace"])
def test_trace_within_three_stderr(case, method):
    res = call(hessian_trace, case, method=method, n_hvp=60)
    exact = torch.trace(case.hess).item()
    assert res.n_hvp == 60 and res.method == method and res.stderr > 0
    assert abs(res.value - exact) <= 3 * res.stderr


def test_hutchpp_beats_hutchinson_on_decaying_spectrum():
    """A no-norm MLP after a few SGD steps on Gaussian blobs: a few outlier eigenvalues carry
    the trace, which Hutch++'s sketch removes, so its stderr is far smaller at equal cost."""
    torch.manual_seed(0)
    model = build_model("mlp", norm="none", in_shape=(10,), num_classes=3, width=8, depth=2)
    model = model.double()
    gen = torch.Generator().manual_seed(0)
    means = 3 * torch.randn(3, 10, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=gen)
    x = means[y] + torch.randn(64, 10, generator=gen, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    exact = torch.trace(dense_hessian(model, [(x, y)], "train", torch.get_rng_state())).item()
    plain = hessian_trace(model, F.cross_entropy, (x, y), method="hutchinson", n_hvp=60)
    sketched = hessian_trace(model, F.cross_entropy, (x, y), method="hutch++", n_hvp=60)
    for res in (plain, sketched):
        assert abs(res.value - exact) <= 3 * res.stderr
    assert sketched.stderr < plain.stderr / 3


def test_costs_and_early_stopping():
    model, data, mode = build("gn")
    kw = dict(mode=mode)
    capped = hessian_eigenvalues(model, F.cross_entropy, data, k=3, max_hvp=6, tol=1e-12, **kw)
    assert capped.n_hvp == 6 and not capped.converged
    hutch = hessian_trace(model, F.cross_entropy, data, method="hutchinson", rtol=10.0, **kw)
    assert hutch.n_hvp == 10  # first check after 10 probes
    hpp = hessian_trace(model, F.cross_entropy, data, n_hvp=60, rtol=10.0, **kw)
    assert hpp.n_hvp == 2 * 20 + 10
    a = hessian_trace(model, F.cross_entropy, data, n_hvp=12, seed=3, **kw)
    b = hessian_trace(model, F.cross_entropy, data, n_hvp=12, seed=3, **kw)
    assert a == b  # seeded: identical estimates


def test_bad_method_raises():
    model, data, _ = build("bn_train")
    with pytest.raises(ValueError, match="'hutch'"):
        hessian_trace(model, F.cross_entropy, data, method="hutch")


def _dense_operator(hess):
    """A stand-in for `FixedLoss` whose products are those of a dense matrix."""
    return SimpleNamespace(
        dim=hess.shape[0], dtype=hess.dtype, device=hess.device, hvp=lambda v: hess @ v
    )


def _xtrace_of(hess, omega):
    """XTrace from its definition (Epperly et al. 2024) with the test vectors `omega` (n, s):
    for each i a fresh QR of the sketch H·omega without column i, the projected residual of
    ω_i rescaled to norm √(n − s + 1), and the Hutch++ estimate T_i; the T_i."""
    n, s = omega.shape
    y = hess @ omega
    estimates = []
    for i in range(s):
        rest = torch.cat([y[:, :i], y[:, i + 1 :]], dim=1)
        q = torch.linalg.qr(rest).Q if s > 1 else rest  # (n, s - 1)
        r = omega[:, i] - q @ (q.T @ omega[:, i])
        r = r * np.sqrt(n - s + 1) / torch.linalg.vector_norm(r)
        estimates.append((torch.trace(q.T @ hess @ q) + r @ hess @ r).item())
    return np.array(estimates)


def _xtrace_by_definition(hess, s, seed):
    """The mean of the T_i and the jackknife stderr: XTrace rerun from its definition on the
    s − 1 vectors left when each ω_j is dropped, √((s − 1)/s · Σ_j (T_(j) − mean)²). Same
    test vectors as `_xtrace`."""
    n = hess.shape[0]
    gen = generator(hess.device, seed)
    omega = torch.randn((n, s), generator=gen, dtype=hess.dtype)
    omega = omega * (np.sqrt(n) / torch.linalg.vector_norm(omega, dim=0))
    estimates = _xtrace_of(hess, omega)
    dropped = np.array(
        [_xtrace_of(hess, torch.cat([omega[:, :j], omega[:, j + 1 :]], 1)).mean() for j in range(s)]
    )
    jackknife = np.sqrt((s - 1) / s * np.sum((dropped - dropped.mean()) ** 2))
    return estimates.mean(), jackknife


@pytest.mark.parametrize("s", [2, 7, 20])
def test_xtrace_matches_its_definition(s):
    gen = torch.Generator().manual_seed(s)
    a = torch.randn(40, 40, generator=gen, dtype=torch.float64)
    hess = a @ torch.diag(torch.logspace(0, -3, 40, dtype=torch.float64)) @ a.T - 0.1 * torch.eye(
        40, dtype=torch.float64
    )  # symmetric, indefinite, decaying spectrum
    value, stderr = _xtrace(_dense_operator(hess), s, generator(hess.device, 5))
    ref_value, ref_stderr = _xtrace_by_definition(hess, s, seed=5)
    assert value == pytest.approx(ref_value, rel=1e-10)
    assert stderr == pytest.approx(ref_stderr, rel=1e-8)


def test_xtrace_exact_when_the_sketch_spans_everything():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(12, 12, generator=gen, dtype=torch.float64)
    hess = (a + a.T) / 2
    value, stderr = _xtrace(_dense_operator(hess), 12, generator(hess.device, 0))
    assert value == pytest.approx(torch.trace(hess).item(), abs=1e-9)
    assert stderr == pytest.approx(0.0, abs=1e-8)


def test_xtrace_refuses_rtol():
    model, data, _ = build("bn_train")
    with pytest.raises(ValueError, match="rtol"):
        hessian_trace(model, F.cross_entropy, data, method="xtrace", rtol=0.1)
