"""`HessianSpectrum(warm_start=...)`: the eigenvalues equal the dense Hessian's with and without
warm start, and starting from the last eigenvectors saves products on a slowly changing model."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from normtheory.hooks import HessianSpectrum, Monitor
from normtheory.measure.curvature import hessian_eigenvalues
from normtheory.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _problem():
    torch.manual_seed(0)
    model = build_model(
        "convnet", norm="batch", in_shape=(1, 6, 6), num_classes=3, width=4, depth=2
    )
    model = model.double().eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(24, 1, 6, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (24,), generator=gen)
    return model, (x, y)


def _dense_top(model, probe, k):
    """The k largest eigenvalues of the eval-mode loss's dense Hessian (autograd, float64)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    buffers = dict(model.named_buffers())

    def loss(w):
        state = {n: t.view(s) for n, t, s in zip(names, torch.split(w, sizes), shapes)}
        state.update(buffers)
        return F.cross_entropy(torch.func.functional_call(model, state, (probe[0],)), probe[1])

    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    hess = torch.autograd.functional.hessian(loss, w)
    return torch.linalg.eigvalsh(hess).flip(0)[:k].numpy()


@pytest.mark.parametrize("k", [1, 2])
def test_warm_start_matches_dense_and_saves_products(k):
    model, probe = _problem()
    kw = dict(probe=probe, k=k, tol=1e-6, mode="eval", every=1)
    hooks = [
        HessianSpectrum(warm_start=True, name="warm", **kw),
        HessianSpectrum(warm_start=False, name="cold", **kw),
    ]
    monitor = Monitor(model, hooks)
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    dense = []
    for step in range(6):  # small steps: the eigenvectors turn slowly
        opt.zero_grad()
        F.cross_entropy(model(probe[0]), probe[1]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        monitor.after_step(step)
        dense.append(_dense_top(model, probe, k))
    frame = monitor.frame()
    for name in ("warm", "cold"):
        eig = frame[frame.metric == f"{name}.eig"].pivot(
            index="step", columns="key", values="value"
        )
        np.testing.assert_allclose(eig.to_numpy(), np.array(dense), rtol=1e-6)
        assert (frame[frame.metric == f"{name}.converged"].value == 1).all()
    hvp = frame[frame.metric.str.endswith(".n_hvp")].pivot(
        index="step", columns="metric", values="value"
    )
    assert hvp["warm.n_hvp"].iloc[0] == hvp["cold.n_hvp"].iloc[0]  # the first call starts cold
    assert hvp["warm.n_hvp"].iloc[1:].sum() < 0.7 * hvp["cold.n_hvp"].iloc[1:].sum()


def test_start_vector_is_checked_and_used():
    model, probe = _problem()
    cold = hessian_eigenvalues(
        model, F.cross_entropy, probe, mode="eval", tol=1e-8, return_vectors=True
    )
    warm = hessian_eigenvalues(
        model, F.cross_entropy, probe, mode="eval", tol=1e-8, start=cold.vectors
    )
    assert warm.values[0].item() == pytest.approx(cold.values[0].item(), rel=1e-8)
    assert warm.n_hvp <= 3 < cold.n_hvp  # an eigenvector as start: invariant after one step
    with pytest.raises(ValueError, match="start"):
        hessian_eigenvalues(model, F.cross_entropy, probe, mode="eval", start=torch.ones(5))
