"""Gradient smoothness along −∇L (Santurkar et al. 2018) against direct SGD-like steps on copies
of the model, with the same dropout masks."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hessian_oracle import call

from normtheory.measure.landscape import gradient_smoothness

pytestmark = pytest.mark.usefixtures("one_thread")


def test_smoothness_matches_direct_steps(case):
    """Oracle: a copy of the model per step size, weights stepped in place, loss and grads by
    plain backward with the same masks (RNG reset); the copy's buffers may change, ours not."""
    lr, mult, points = 0.3, (0.5, 4.0), 4
    res = call(gradient_smoothness, case, lr=lr, multipliers=mult, n_points=points)

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
