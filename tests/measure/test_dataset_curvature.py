"""Dataset-wide curvature: Hessians over an iterable of batches, streamed, of any structure.

Oracle: the dense float64 Hessian (autograd) of the mean loss over the concatenated batch, for
a model without batch coupling (per-example LayerNorm), so that the mean over batches weighted
by their sizes must equal it exactly, a partial last batch included.
"""

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from normtheory.batches import model_loss
from normtheory.measure import hessian_eigenvalues, hessian_trace
from normtheory.measure._functional import fixed_loss
from normtheory.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")
N, D, K = 13, 6, 3  # examples (13 = 5 + 5 + 3: a partial last batch), features, classes


def _model(norm="layer", seed=0):
    torch.manual_seed(seed)
    return build_model("mlp", norm=norm, in_shape=(D,), num_classes=K, width=5, depth=2).double()


def _data(seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=gen, dtype=torch.float64), torch.randint(
        0, K, (N,), generator=gen
    )


def _dense(model, batches, mode="train"):
    """Σ_b n_b H_b / Σ n_b with H_b the dense Hessian of batch b's mean loss."""
    model = model.train(mode == "train")
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    buffers = dict(model.named_buffers())
    total = sum(len(y) for _, y in batches)

    def loss(flat):
        parts = torch.split(flat, [s.numel() for s in shapes])
        state = {n: p.view(s) for n, p, s in zip(names, parts, shapes)}
        state.update({n: b.clone() for n, b in buffers.items()})
        return sum(
            F.cross_entropy(functional_call(model, state, (x,)), y) * len(y) / total
            for x, y in batches
        )

    return torch.autograd.functional.hessian(loss, w)


class Stream:
    """A re-iterable of batches made afresh on every pass (as a DataLoader makes them); counts
    how many of the batches it made are alive at once."""

    def __init__(self, x, y, batch_size, as_dict=False):
        self.x, self.y, self.batch_size, self.as_dict = x, y, batch_size, as_dict
        self.alive: list[weakref.ref] = []
        self.max_alive = 0

    def __iter__(self):
        for start in range(0, len(self.y), self.batch_size):
            gc.collect()
            self.alive = [r for r in self.alive if r() is not None]
            self.max_alive = max(self.max_alive, len(self.alive) + 1)
            x = self.x[start : start + self.batch_size].clone()
            y = self.y[start : start + self.batch_size].clone()
            self.alive.append(weakref.ref(x))
            yield {"features": x, "labels": y} if self.as_dict else (x, y)


def _hvp(model, loss_fn, data, v):
    with fixed_loss(model, loss_fn, data, mode="train") as f:
        return f.hvp(v)


def _loaders(x, y):
    ds = torch.utils.data.TensorDataset(x, y)
    return {
        "list": [(x[:5], y[:5]), (x[5:10], y[5:10]), (x[10:], y[10:])],
        "loader": torch.utils.data.DataLoader(ds, batch_size=5),
        "shuffled": torch.utils.data.DataLoader(ds, batch_size=5, shuffle=True),
        "stream": Stream(x, y, 5),
    }


@pytest.mark.parametrize("kind", ["list", "loader", "shuffled", "stream"])
def test_multi_batch_hessian_is_the_concatenated_batch(kind):
    """H v over batches of 5, 5 and 3 equals the dense Hessian of all 13 examples at once."""
    model, (x, y) = _model(), _data()
    dense = _dense(model, [(x, y)])
    v = torch.randn(dense.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    rng = torch.get_rng_state()
    hv = _hvp(model, F.cross_entropy, _loaders(x, y)[kind], v)
    torch.testing.assert_close(hv, dense @ v, rtol=1e-10, atol=1e-12)
    assert torch.equal(torch.get_rng_state(), rng)  # the shuffling loader's draws are undone


def test_spectrum_and_trace_over_a_loader():
    model, (x, y) = _model(), _data()
    dense = _dense(model, [(x, y)])
    eigs = torch.linalg.eigvalsh(dense)
    loader = _loaders(x, y)["loader"]
    res = hessian_eigenvalues(model, F.cross_entropy, loader, k=2, tol=1e-8)
    torch.testing.assert_close(res.values, eigs.flip(0)[:2], rtol=1e-7, atol=1e-10)
    n = dense.shape[0]
    trace = hessian_trace(model, F.cross_entropy, loader, method="hutch++", n_hvp=3 * n)
    assert trace.value == pytest.approx(float(eigs.sum()), rel=1e-8, abs=1e-10)


def test_dict_batches_with_a_model_loss():
    """Dict batches and loss_fn(model, batch) give the products of (x, y) and cross-entropy."""
    model, (x, y) = _model(), _data()

    @model_loss
    def loss(model, batch):
        return F.cross_entropy(model(batch["features"]), batch["labels"])

    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    expected = _hvp(model, F.cross_entropy, (x, y), v)
    one = _hvp(model, loss, {"features": x, "labels": y}, v)
    many = _hvp(model, loss, Stream(x, y, 4, as_dict=True), v)
    torch.testing.assert_close(one, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(many, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n_batches", [4, 16])
def test_memory_stays_flat_as_batches_grow(n_batches):
    """At most the batch in use and the one being made are alive, however many there are: the
    data is streamed, never held (on the device or elsewhere) as a whole."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4 * n_batches, D, generator=gen, dtype=torch.float64)
    y = torch.randint(0, K, (4 * n_batches,), generator=gen)
    stream = Stream(x, y, 4)
    hessian_eigenvalues(_model(), F.cross_entropy, stream, k=1, max_hvp=3)
    assert stream.max_alive <= 2


def test_train_mode_batch_norm_uses_per_batch_statistics():
    """BN over several batches: the mean of the per-batch Hessians, each batch normalized with
    its own statistics (not one giant batch)."""
    model, (x, y) = _model("batch"), _data()
    batches = [(x[:5], y[:5]), (x[5:10], y[5:10]), (x[10:], y[10:])]
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    hv = _hvp(model, F.cross_entropy, Stream(x, y, 5), v)
    torch.testing.assert_close(hv, _dense(model, batches) @ v, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(hv, _dense(model, [(x, y)]) @ v, rtol=1e-6)


def test_one_shot_and_empty_data_are_refused():
    model, (x, y) = _model(), _data()
    with pytest.raises(ValueError, match="one-shot"):
        hessian_eigenvalues(model, F.cross_entropy, ((x, y) for _ in range(2)))
    with pytest.raises(ValueError, match="no batches"):
        hessian_eigenvalues(model, F.cross_entropy, [])
