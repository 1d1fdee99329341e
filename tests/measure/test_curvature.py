"""Curvature measurements against a dense float64 Hessian from autograd, on tiny networks.

The oracle builds the loss as one function of the flat weights, runs its forward pass ONCE
(so dropout masks are drawn once, from the RNG state the measurement will also start from) and
differentiates it twice with `torch.autograd.functional.hessian`. Agreement therefore also
shows that the measurements see one fixed loss: same masks, batch statistics, frozen buffers.
"""

import random
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hessian_oracle import build, call, dense_hessian, flat_names

from normtheory.measure import (
    gradient_smoothness,
    hessian_density,
    hessian_eigenvalues,
    hessian_trace,
    smoothed_density,
)
from normtheory.models import build_model

WHICH = ["largest", "smallest", "magnitude"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _reference(eigs, k, which):
    if which == "largest":
        return eigs.flip(0)[:k]
    if which == "smallest":
        return eigs[:k]
    return eigs[eigs.abs().argsort(descending=True)][:k]


@pytest.mark.parametrize("which", WHICH)
def test_eigenvalues_match_dense(case, which):
    res = call(hessian_eigenvalues, case, k=3, which=which, tol=1e-6, return_vectors=True)
    eigs = torch.linalg.eigvalsh(case.hess)
    ref = _reference(eigs, 3, which)
    assert res.values.dtype == torch.float64 and res.values.shape == (3,)
    torch.testing.assert_close(res.values, ref, rtol=1e-6, atol=0)
    assert res.converged and torch.all(res.residuals <= 1e-6 * res.values.abs())
    n = case.hess.shape[0]
    assert res.vectors.shape == (n, 3) and res.n_hvp < n  # cheaper than forming H
    dense_residual = case.hess @ res.vectors - res.vectors * res.values
    assert torch.linalg.vector_norm(dense_residual, dim=0).max() < 1e-6 * res.values.abs().max()


def test_lanczos_residual_estimates_equal_true_residuals(case):
    """The default reports β_m|s_{m,i}| (free); verify=True computes ‖Hy − θy‖ with k more HVPs."""
    fast = call(hessian_eigenvalues, case, k=3, tol=1e-6, return_vectors=True)
    slow = call(hessian_eigenvalues, case, k=3, tol=1e-6, verify=True)
    assert slow.n_hvp == fast.n_hvp + 3
    torch.testing.assert_close(fast.values, slow.values, rtol=1e-12, atol=0)
    dense = torch.linalg.vector_norm(case.hess @ fast.vectors - fast.vectors * fast.values, dim=0)
    scale = fast.values.abs().max()
    torch.testing.assert_close(fast.residuals, dense, rtol=0, atol=1e-9 * scale)
    torch.testing.assert_close(slow.residuals, dense, rtol=0, atol=1e-9 * scale)


def test_density_moments(case):
    """E_v[Σ w θ^p] = vᵀHᵖv averaged = tr(Hᵖ)/n for p = 1, 2; tolerance from the exact
    variance of a Rademacher quadratic form, Var(zᵀAz) = 2 Σ_{i≠j} A_ij², over the runs."""
    runs, steps = 8, 12
    res = call(hessian_density, case, n_iter=steps, n_runs=runs, grid_size=256)
    n = case.hess.shape[0]
    assert res.nodes.shape == res.weights.shape == (runs, steps) and res.n_hvp == runs * steps
    torch.testing.assert_close(res.weights.sum(dim=1), torch.ones(runs, dtype=torch.float64))
    eigs = torch.linalg.eigvalsh(case.hess)
    assert res.nodes.min() >= eigs[0] - 1e-9 and res.nodes.max() <= eigs[-1] + 1e-9
    area = torch.trapezoid(res.density, res.grid).item()
    assert res.grid.shape == res.density.shape == (256,) and area == pytest.approx(1, abs=1e-9)
    for power, matrix in ((1, case.hess), (2, case.hess @ case.hess)):
        moment = (res.weights * res.nodes**power).sum(dim=1).mean().item()
        off_diag = matrix.square().sum() - matrix.diagonal().square().sum()
        std = (2 * off_diag / runs).sqrt().item() / n
        assert abs(moment - torch.trace(matrix).item() / n) <= 4 * std


def _snapshot(model):
    return dict(
        params=[p.detach().clone() for p in model.parameters()],
        grads=[None if p.grad is None else p.grad.clone() for p in model.parameters()],
        buffers=[b.clone() for b in model.buffers()],
        modes=[m.training for m in model.modules()],
        torch_rng=torch.get_rng_state(),
        np_rng=np.random.get_state()[1].copy(),
        py_rng=random.getstate(),
    )


def _assert_same(before, after):
    for key in ("params", "buffers"):
        for a, b in zip(before[key], after[key]):
            assert torch.equal(a, b), key
    for a, b in zip(before["grads"], after["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert before["modes"] == after["modes"]
    assert torch.equal(before["torch_rng"], after["torch_rng"])
    assert np.array_equal(before["np_rng"], after["np_rng"]) and before["py_rng"] == after["py_rng"]


MEASURES = {
    "eigenvalues": (hessian_eigenvalues, {"k": 2}),
    "trace": (hessian_trace, {"n_hvp": 6}),
    "density": (hessian_density, {"n_iter": 5, "n_runs": 2}),
    "smoothness": (gradient_smoothness, {"lr": 0.1, "n_points": 2}),
}


@pytest.mark.parametrize("measure", list(MEASURES))
@pytest.mark.parametrize(
    ("start_training", "mode"), [(True, "eval"), (True, "train"), (False, "train")]
)
def test_no_side_effects(measure, start_training, mode):
    """Parameters, .grad (some set), buffers, RNG streams and every module's flag survive."""
    model, data, _ = build("dropout")
    model.train(start_training)
    model.head.eval()  # a mixed state must survive too
    for p in list(model.parameters())[::2]:
        p.grad = torch.randn_like(p)
    before = _snapshot(model)
    fn, kw = MEASURES[measure]
    fn(model, F.cross_entropy, data, mode=mode, **kw)
    _assert_same(before, _snapshot(model))


@pytest.mark.parametrize(
    "params", [["conv2"], ["norm1", "head.weight"], "head", ["conv1.weight", "conv1"]]
)
def test_params_selects_hessian_block(params):
    """A selection measures the sub-block H_SS of the dense Hessian (others held fixed)."""
    model, data, mode = build("bn_train")
    rng = torch.get_rng_state()
    hess = dense_hessian(model, data, mode, rng)
    names = [params] if isinstance(params, str) else params
    mask = torch.cat(
        [
            torch.full((size,), any(n == s or n.startswith(s + ".") for s in names))
            for n, size in flat_names(model)
        ]
    )
    block = hess[mask][:, mask]
    res = hessian_eigenvalues(model, F.cross_entropy, data, params=params, tol=1e-8)
    torch.testing.assert_close(res.values[0], torch.linalg.eigvalsh(block)[-1], rtol=1e-6, atol=0)


def test_tiny_block_is_exact():
    """n = 8 (BN affine of one layer): Lanczos exhausts the space, all eigenvalues come out;
    Hutch++ with a sketch of n columns gives the exact trace with stderr 0 in 2n products."""
    model, data, mode = build("bn_train")
    hess = dense_hessian(model, data, mode, torch.get_rng_state())
    block = hess[36:44, 36:44]  # conv1.weight (36), then norm1.weight, norm1.bias
    res = hessian_eigenvalues(model, F.cross_entropy, data, params="norm1", k=8, which="smallest")
    torch.testing.assert_close(res.values, torch.linalg.eigvalsh(block), rtol=1e-9, atol=1e-12)
    assert res.converged and res.n_hvp == 8  # the space is exhausted: n products, residual 0
    tr = hessian_trace(model, F.cross_entropy, data, params="norm1", n_hvp=30)
    assert tr.value == pytest.approx(torch.trace(block).item(), rel=1e-10)
    assert tr.stderr == 0.0 and tr.n_hvp == 16


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"mode": "test"}, "'test'"),
        ({"params": ["conv9"]}, "'conv9'"),
        ({"params": ["act1"]}, "'act1'"),
        ({"which": "biggest"}, "'biggest'"),
        ({"k": 0}, "0"),
    ],
)
def test_bad_inputs_raise(kwargs, bad):
    model, data, _ = build("bn_train")
    with pytest.raises(ValueError, match=bad) as info:
        hessian_eigenvalues(model, F.cross_entropy, data, **kwargs)
    if "conv9" in bad:
        assert "'conv1'" in str(info.value)  # lists the valid module names


def test_top_eigenvalue_agrees_with_pyhessian():
    """Eval mode (PyHessian's only mode) on a small float32 CNN; PyHessian's power iteration
    run to tol 1e-6. It leaves the model in eval mode with .grad set: we undo that."""
    from pyhessian import hessian

    torch.manual_seed(0)
    model = build_model(
        "convnet", norm="batch", in_shape=(3, 8, 8), num_classes=4, width=8, depth=2
    )
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, 8, 8, generator=gen), torch.randint(0, 4, (32,), generator=gen)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, 3, 8, 8, generator=gen))
    ours = hessian_eigenvalues(model, F.cross_entropy, (x, y), mode="eval", tol=1e-5)
    with warnings.catch_warnings(), torch.random.fork_rng():
        warnings.simplefilter("ignore")
        theirs, _ = hessian(model, F.cross_entropy, data=(x, y), cuda=False).eigenvalues(
            top_n=1, maxIter=200, tol=1e-6
        )
    model.train()
    model.zero_grad(set_to_none=True)
    assert ours.converged and ours.n_hvp < 30
    assert ours.values[0].item() == pytest.approx(theirs[0], rel=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_matches_cpu_and_keeps_vectors_on_device():
    model, data, mode = build("bn_train")
    cpu = hessian_eigenvalues(model, F.cross_entropy, data, mode=mode, k=2, tol=1e-8)
    model, data = model.cuda(), [(x.cuda(), y.cuda()) for x, y in data]
    cuda_rng = torch.cuda.get_rng_state()
    res = hessian_eigenvalues(
        model, F.cross_entropy, data, mode=mode, k=2, tol=1e-8, return_vectors=True
    )
    assert res.vectors.device.type == "cuda" and res.values.device.type == "cpu"
    torch.testing.assert_close(res.values, cpu.values, rtol=1e-6, atol=0)
    for fn, kw in MEASURES.values():
        fn(model, F.cross_entropy, data, mode=mode, **kw)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_rng)


def test_smoothed_density_is_the_weighted_sum_of_normal_densities():
    """Oracle: scipy's normal pdf summed by hand; the smoothed rule integrates to Σ w."""
    from scipy import stats

    nodes, weights = np.array([-1.0, 0.2, 3.0]), np.array([0.5, 0.3, 0.2])
    grid, sigma = np.linspace(-4, 6, 2001), 0.4
    want = sum(w * stats.norm.pdf(grid, loc=t, scale=sigma) for t, w in zip(nodes, weights))
    got = smoothed_density(nodes, weights, grid, sigma)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    assert np.trapezoid(got, grid) == pytest.approx(weights.sum(), rel=1e-6)
    assert smoothed_density(nodes, 2 * weights, grid, sigma) == pytest.approx(2 * got)
