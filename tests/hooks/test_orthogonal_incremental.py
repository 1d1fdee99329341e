"""`OrthogonalWeightNorm` with the incremental span, recorded every step while the span grows
late: its records equal ‖W_t P⊥‖ with P⊥ from the eigendecomposition of the accumulated Gram
(an oracle independent of `InputSpan`), and SGD keeps the ratio at 1 after every growth."""

import pytest
import torch
import torch.nn.functional as F

from normtheory.hooks import Monitor, OrthogonalWeightNorm
from normtheory.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _batches(steps: int = 24, late: int = 15, d: int = 10):
    """(x, y) in float64: x from span{b1, b2}, then span{b2, b3}, and from step `late` on
    also b4, so the first layer's span grows from 2 to 3 to 4 dimensions of 10."""
    gen = torch.Generator().manual_seed(0)
    b, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    out = []
    for t in range(steps):
        fam = b[:, [0, 1]] if t < 3 else b[:, [1, 2]]
        if t >= late:
            fam = torch.cat([fam, b[:, [3]]], 1)
        x = torch.randn(16, fam.shape[1], generator=gen, dtype=torch.float64) @ fam.T
        out.append((x, torch.randint(3, (16,), generator=gen)))
    return out


def _oracle_norm(weight: torch.Tensor, gram: torch.Tensor) -> float:
    lam, vec = torch.linalg.eigh(gram)
    basis = vec[:, lam > 1e-10 * lam.max()]
    return float((weight @ (torch.eye(len(gram), dtype=torch.float64) - basis @ basis.T)).norm())


def test_records_follow_a_span_that_grows_late():
    torch.manual_seed(0)
    model = build_model("mlp", norm="batch", in_shape=(10,), num_classes=3, width=8, depth=2)
    model = model.double()
    w0 = model.fc1.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    monitor = Monitor(model, [OrthogonalWeightNorm(layers=["fc1"])])
    monitor.start()
    gram = torch.zeros(10, 10, dtype=torch.float64)
    dims = []
    for step, (x, y) in enumerate(_batches()):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        monitor.after_backward(step, inputs=x)
        opt.step()
        gram += x.T @ x
        rows = {r[1]: r[3] for r in monitor.after_step(step) if r[2] == "fc1"}
        expected = _oracle_norm(model.fc1.weight.detach(), gram)
        assert rows["orth.norm"] == pytest.approx(expected, rel=1e-10)
        assert rows["orth.ratio"] == pytest.approx(1.0, abs=1e-10)  # SGD: W P⊥ unchanged
        assert rows["orth.ratio"] * _oracle_norm(w0, gram) == pytest.approx(expected, rel=1e-10)
        assert rows["orth.drift"] < 1e-10
        dims.append(rows["orth.complement_dim"])
    monitor.end(step)
    assert dims[0] == 8 and dims[3] == 7 and dims[14] == 7 and dims[15] == 6
