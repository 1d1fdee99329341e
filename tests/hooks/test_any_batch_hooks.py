"""Hooks on batches of any structure with a loss ``loss_fn(model, batch)``: the same records as
with ``(inputs, targets)`` and cross-entropy (the oracle: two loops over the same data, one in
each form), training bit-identical with and without them, and dataset-wide probes."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normtheory.batches import model_loss
from normtheory.hooks import (
    HessianSpectrum,
    HessianTrace,
    Monitor,
    OrthogonalWeightNorm,
    ScaleInvariance,
    Smoothness,
)
from normtheory.measure import hessian_eigenvalues

pytestmark = pytest.mark.usefixtures("one_thread")
N, D, K = 24, 6, 3


class Keywords(nn.Module):
    """Called as ``model(features=..., scale=...)``, like a Hugging Face model on a dict."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(D, 8, bias=False)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, K)

    def forward(self, features, scale=1.0):
        return self.head(torch.relu(self.norm(self.fc1(features * scale))))


@model_loss
def dict_loss(model, batch):
    return F.cross_entropy(model(**batch["inputs"]), batch["labels"])


def _data(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=gen), torch.randint(0, K, (N,), generator=gen)


def _hooks(loss_fn):
    return [
        HessianSpectrum(k=2, tol=1e-4, every=2, loss_fn=loss_fn),
        HessianTrace(n_hvp=12, every=2, loss_fn=loss_fn),
        Smoothness(lr=0.1, n_points=2, every=3, invariant=True, loss_fn=loss_fn),
        OrthogonalWeightNorm(every=2),
        ScaleInvariance(every=2),
    ]


def _run(model, as_dict, hooks, steps=6):
    """Plain SGD over batches of 8; dict batches call ``model(**inputs)``."""
    x, y = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = Monitor(model, hooks, optimizer=opt)
    monitor.start()
    for step in range(steps):
        xb, yb = x[8 * (step % 3) : 8 * (step % 3 + 1)], y[8 * (step % 3) : 8 * (step % 3 + 1)]
        if as_dict:
            batch = {"inputs": {"features": xb, "scale": 1.0}, "labels": yb}
            inputs = batch["inputs"]
            out = model(**inputs)
            loss = F.cross_entropy(out, yb)
            kw = {"batch": batch, "inputs": inputs}
        else:
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            kw = {"inputs": xb, "targets": yb}
        opt.zero_grad()
        loss.backward()
        monitor.after_backward(step, loss=loss.detach(), **kw)
        opt.step()
        monitor.after_step(step, loss=loss.detach(), **kw)
    monitor.end(steps)
    return monitor.frame()


def test_dict_batches_record_what_tuple_batches_record():
    torch.manual_seed(0)
    model = Keywords()
    tuple_model, dict_model = copy.deepcopy(model), copy.deepcopy(model)
    plain = _run(tuple_model, False, _hooks(F.cross_entropy))
    general = _run(dict_model, True, _hooks(dict_loss))
    assert set(general["metric"]) == set(plain["metric"])
    assert {"hessian.eig", "orth.updates", "scale_inv.cosine", "smoothness.beta"} <= set(
        plain["metric"]
    )
    torch.testing.assert_close(
        torch.tensor(general["value"].to_numpy()),
        torch.tensor(plain["value"].to_numpy()),
        rtol=1e-5,
        atol=1e-7,
    )
    updates = general.loc[general["metric"] == "orth.updates", "value"]
    assert updates.iloc[-1] == 6  # every dict batch reached the span (matched by keyword)
    # scale_inv found fc1 (feeding a per-token LayerNorm) from the dict inputs
    assert set(general.loc[general["metric"] == "scale_inv.cosine", "key"]) == {"fc1.weight"}


def test_training_is_bit_identical_with_and_without_the_hooks():
    torch.manual_seed(0)
    model = Keywords()
    bare, watched = copy.deepcopy(model), copy.deepcopy(model)
    _run(bare, True, [])
    _run(watched, True, _hooks(dict_loss))
    for (n, a), (_, b) in zip(bare.state_dict().items(), watched.state_dict().items()):
        assert torch.equal(a, b), n


def test_a_dataloader_probe_measures_the_whole_dataset():
    torch.manual_seed(0)
    model = Keywords()
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10)
    hook = HessianSpectrum(k=1, tol=1e-6, every=1, probe=loader)
    monitor = Monitor(model, [hook])
    rows = monitor.after_step(0)
    expected = hessian_eigenvalues(model, F.cross_entropy, (x, y), k=1, tol=1e-6)
    eig = next(v for _, m, _, v in rows if m == "hessian.eig")
    assert eig == pytest.approx(float(expected.values[0]), rel=1e-5)
