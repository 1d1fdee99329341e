"""Curvature measurements against a dense float64 Hessian from autograd, on tiny networks.

The oracle builds the loss as one function of the flat weights, runs its forward pass ONCE
(so dropout masks are drawn once, from the RNG state the measurement will also start from) and
differentiates it twice with `torch.autograd.functional.hessian`. Agreement therefore also
shows that the measurements see one fixed loss: same masks, batch statistics, frozen buffers.
"""

import copy
import random
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from normtheory.measure import (
    gradient_smoothness,
    hessian_density,
    hessian_eigenvalues,
    hessian_trace,
)
from normtheory.measure.lanczos import Lanczos
from normtheory.models import build_model

CASES = {  # name: (arch, norm, build options, mode)
    "bn_train": ("convnet", "batch", {}, "train"),
    "bn_eval": ("convnet", "batch", {}, "eval"),
    "gn": ("convnet", "group", {"norm_kw": {"groups": 2}}, "train"),
    "dropout": ("mlp", "batch", {"placement": "ic", "dropout_keep": 0.7}, "train"),
}
IN_SHAPES = {"convnet": (1, 6, 6), "mlp": (10,)}
NUM_CLASSES = 3
WHICH = ["largest", "smallest", "magnitude"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _data(in_shape, sizes=(8, 6), seed=1):
    """Two batches of unequal size, so the batch-size weighting matters."""
    gen = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(size, *in_shape, generator=gen, dtype=torch.float64),
            torch.randint(0, NUM_CLASSES, (size,), generator=gen),
        )
        for size in sizes
    ]


def _flat_names(model):
    return [(name, p.numel()) for name, p in model.named_parameters()]


def _dense_loss(model, data, mode, rng):
    """w -> L(w): a copy of the model, fresh buffer copies, RNG reset to `rng` before forward."""
    model = copy.deepcopy(model).train(mode == "train")
    names, sizes = zip(*_flat_names(model))
    shapes = [p.shape for p in model.parameters()]
    buffers = dict(model.named_buffers())
    total = sum(len(x) for x, _ in data)

    def loss(w):
        torch.set_rng_state(rng)
        state = {n: t.view(s) for n, t, s in zip(names, torch.split(w, sizes), shapes)}
        state.update({n: b.clone() for n, b in buffers.items()})
        outs = [torch.func.functional_call(model, state, (x,)) for x, _ in data]
        return sum(F.cross_entropy(o, y) * len(y) / total for o, (_, y) in zip(outs, data))

    return loss


def _dense_hessian(model, data, mode, rng):
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    with torch.random.fork_rng():
        return torch.autograd.functional.hessian(_dense_loss(model, data, mode, rng), w)


def _build(name, seed=0):
    arch, norm, kw, mode = CASES[name]
    torch.manual_seed(seed)
    model = build_model(
        arch, norm=norm, in_shape=IN_SHAPES[arch], num_classes=NUM_CLASSES, width=4, depth=2, **kw
    ).double()
    data = _data(IN_SHAPES[arch])
    with torch.no_grad():  # non-trivial running statistics for eval mode
        model.train()
        for x, _ in _data(IN_SHAPES[arch], seed=2):
            model(x + 0.5)
    return model, data, mode


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    model, data, mode = _build(request.param)
    rng = torch.get_rng_state()
    hess = _dense_hessian(model, data, mode, rng)
    return SimpleNamespace(
        name=request.param, model=model, data=data, mode=mode, rng=rng, hess=hess
    )


def _call(fn, case, **kw):
    """Calls a measurement from the RNG state the oracle used (dropout masks match)."""
    torch.set_rng_state(case.rng)
    return fn(case.model, F.cross_entropy, case.data, mode=case.mode, **kw)


def _reference(eigs, k, which):
    if which == "largest":
        return eigs.flip(0)[:k]
    if which == "smallest":
        return eigs[:k]
    return eigs[eigs.abs().argsort(descending=True)][:k]


@pytest.mark.parametrize("which", WHICH)
def test_eigenvalues_match_dense(case, which):
    res = _call(hessian_eigenvalues, case, k=3, which=which, tol=1e-6, return_vectors=True)
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
    fast = _call(hessian_eigenvalues, case, k=3, tol=1e-6, return_vectors=True)
    slow = _call(hessian_eigenvalues, case, k=3, tol=1e-6, verify=True)
    assert slow.n_hvp == fast.n_hvp + 3
    torch.testing.assert_close(fast.values, slow.values, rtol=1e-12, atol=0)
    dense = torch.linalg.vector_norm(case.hess @ fast.vectors - fast.vectors * fast.values, dim=0)
    scale = fast.values.abs().max()
    torch.testing.assert_close(fast.residuals, dense, rtol=0, atol=1e-9 * scale)
    torch.testing.assert_close(slow.residuals, dense, rtol=0, atol=1e-9 * scale)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_within_three_stderr(case, method):
    res = _call(hessian_trace, case, method=method, n_hvp=60)
    exact = torch.trace(case.hess).item()
    assert res.n_hvp == 60 and res.method == method and res.stderr > 0
    assert abs(res.value - exact) <= 3 * res.stderr


def test_density_moments(case):
    """E_v[Σ w θ^p] = vᵀHᵖv averaged = tr(Hᵖ)/n for p = 1, 2; tolerance from the exact
    variance of a Rademacher quadratic form, Var(zᵀAz) = 2 Σ_{i≠j} A_ij², over the runs."""
    runs, steps = 8, 12
    res = _call(hessian_density, case, n_iter=steps, n_runs=runs, grid_size=256)
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


def test_smoothness_matches_direct_steps(case):
    """Oracle: a copy of the model per step size, weights stepped in place, loss and grads by
    plain backward with the same masks (RNG reset); the copy's buffers may change, ours not."""
    lr, mult, points = 0.3, (0.5, 4.0), 4
    res = _call(gradient_smoothness, case, lr=lr, multipliers=mult, n_points=points)

    def direct(eta, g=None):
        model = copy.deepcopy(case.model).train(case.mode == "train")
        with torch.no_grad():
            for p, step in zip(model.parameters(), g or []):
                p.sub_(eta * step)
        torch.set_rng_state(case.rng)
        total = sum(len(y) for _, y in case.data)
        loss = sum(F.cross_entropy(model(x), y) * len(y) / total for x, y in case.data)
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters()]

    loss0, g = direct(0.0)
    flat = lambda grads: torch.cat([t.reshape(-1) for t in grads])  # noqa: E731
    etas = lr * np.geomspace(*mult, points)
    steps = [direct(eta, g) for eta in etas]
    losses = torch.tensor([loss for loss, _ in steps], dtype=torch.float64)
    diffs = torch.stack([torch.linalg.vector_norm(flat(g) - flat(gr)) for _, gr in steps])
    torch.testing.assert_close(res.lrs, torch.as_tensor(etas))
    torch.testing.assert_close(res.losses, losses, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(res.grad_diffs, diffs, rtol=1e-8, atol=1e-12)
    g_norm = torch.linalg.vector_norm(flat(g)).item()
    assert res.grad_norm == pytest.approx(g_norm, rel=1e-10)
    assert res.beta == pytest.approx(max(diffs / (torch.as_tensor(etas) * g_norm)).item(), rel=1e-8)
    all_losses = [loss0, *losses.tolist()]
    assert res.loss_range == pytest.approx(max(all_losses) - min(all_losses), rel=1e-8)
    assert (res.grad_pred_min, res.grad_pred_max) == (diffs.min().item(), diffs.max().item())
    assert res.n_grad == 1 + points


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
    model, data, _ = _build("dropout")
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
    model, data, mode = _build("bn_train")
    rng = torch.get_rng_state()
    hess = _dense_hessian(model, data, mode, rng)
    names = [params] if isinstance(params, str) else params
    mask = torch.cat(
        [
            torch.full((size,), any(n == s or n.startswith(s + ".") for s in names))
            for n, size in _flat_names(model)
        ]
    )
    block = hess[mask][:, mask]
    res = hessian_eigenvalues(model, F.cross_entropy, data, params=params, tol=1e-8)
    torch.testing.assert_close(res.values[0], torch.linalg.eigvalsh(block)[-1], rtol=1e-6, atol=0)


def test_tiny_block_is_exact():
    """n = 8 (BN affine of one layer): Lanczos exhausts the space, all eigenvalues come out;
    Hutch++ with a sketch of n columns gives the exact trace with stderr 0 in 2n products."""
    model, data, mode = _build("bn_train")
    hess = _dense_hessian(model, data, mode, torch.get_rng_state())
    block = hess[36:44, 36:44]  # conv1.weight (36), then norm1.weight, norm1.bias
    res = hessian_eigenvalues(model, F.cross_entropy, data, params="norm1", k=8, which="smallest")
    torch.testing.assert_close(res.values, torch.linalg.eigvalsh(block), rtol=1e-9, atol=1e-12)
    assert res.converged and res.n_hvp == 8  # the space is exhausted: n products, residual 0
    tr = hessian_trace(model, F.cross_entropy, data, params="norm1", n_hvp=30)
    assert tr.value == pytest.approx(torch.trace(block).item(), rel=1e-10)
    assert tr.stderr == 0.0 and tr.n_hvp == 16


def test_lanczos_restarts_on_invariant_subspace():
    """An operator with repeated eigenvalues: one start vector only spans 3 directions, so
    the recurrence must restart to reach all n eigenvalues (with their multiplicities)."""
    diag = torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0, 5.0], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    lz = Lanczos(lambda v: diag * v, torch.ones(6, dtype=torch.float64), gen)
    for _ in range(6):
        lz.step()
    theta, _ = lz.ritz()
    np.testing.assert_allclose(theta, diag.numpy(), atol=1e-12)
    basis = lz.basis
    torch.testing.assert_close(basis.T @ basis, torch.eye(6, dtype=torch.float64))


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
    exact = torch.trace(_dense_hessian(model, [(x, y)], "train", torch.get_rng_state())).item()
    plain = hessian_trace(model, F.cross_entropy, (x, y), method="hutchinson", n_hvp=60)
    sketched = hessian_trace(model, F.cross_entropy, (x, y), method="hutch++", n_hvp=60)
    for res in (plain, sketched):
        assert abs(res.value - exact) <= 3 * res.stderr
    assert sketched.stderr < plain.stderr / 3


def test_costs_and_early_stopping():
    model, data, mode = _build("gn")
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
    model, data, _ = _build("bn_train")
    with pytest.raises(ValueError, match=bad) as info:
        hessian_eigenvalues(model, F.cross_entropy, data, **kwargs)
    if "conv9" in bad:
        assert "'conv1'" in str(info.value)  # lists the valid module names


def test_bad_method_raises():
    model, data, _ = _build("bn_train")
    with pytest.raises(ValueError, match="'hutch'"):
        hessian_trace(model, F.cross_entropy, data, method="hutch")


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
    model, data, mode = _build("bn_train")
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
