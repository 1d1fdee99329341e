"""The incremental `InputSpan` against the Gram-eigendecomposition span it replaces: the same
projector after every batch (spans that differ, overlap and grow late), the relative energy
tolerance on both sides of its threshold, and full layers skipped only once proven full."""

import pytest
import torch
from torch import nn

from normtheory.measure.span import InputSpan

pytestmark = pytest.mark.usefixtures("one_thread")

ORACLE_RTOL = 1e-10  # the Gram oracle's cut: λ > ORACLE_RTOL · λ_max, as the old InputSpan


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _oracle_projector(gram: torch.Tensor) -> torch.Tensor:
    """I − V Vᵀ, V the eigenvectors of the accumulated Gram above ORACLE_RTOL · λ_max."""
    lam, vec = torch.linalg.eigh(gram)
    if lam.max() <= 0:
        return torch.eye(len(gram), dtype=torch.float64)
    basis = vec[:, lam > ORACLE_RTOL * lam.max()]
    return torch.eye(len(gram), dtype=torch.float64) - basis @ basis.T


def _subspace_batches(seed: int, d: int = 12, steps: int = 60, late: int = 45):
    """Batches drawn from span{b1, b2}, span{b2, b3}, span{b1 − b3, b4} in turn, then from step
    `late` on also from span{b5} (rank growth late in training); b6 … b_d never appear. The
    b_i are a random orthonormal basis, so no coordinate axis is special."""
    gen = _gen(seed)
    b, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    families = [b[:, [0, 1]], b[:, [1, 2]], torch.stack([b[:, 0] - b[:, 2], b[:, 3]], 1)]
    batches = []
    for t in range(steps):
        fam = families[t % 3]
        if t >= late:
            fam = torch.cat([fam, b[:, [4]]], 1)
        coef = torch.randn(16, fam.shape[1], generator=gen, dtype=torch.float64)
        batches.append(coef @ fam.T)  # (16, d)
    return batches


def test_incremental_span_equals_the_gram_eigendecomposition_after_every_batch():
    batches = _subspace_batches(0)
    span = InputSpan(nn.Linear(12, 3))
    gram = torch.zeros(12, 12, dtype=torch.float64)
    dims = []
    for x in batches:
        span.update(x)
        gram += x.T @ x
        oracle = _oracle_projector(gram)
        assert (span.complement_projector() - oracle).abs().max() <= 1e-10
        dims.append(span.dim)
    assert dims[0] == 2 and dims[2] == 4 and dims[44] == 4 and dims[45] == 5  # the late growth
    torch.testing.assert_close(span.gram(), gram, rtol=1e-12, atol=1e-12)
    basis = span.basis()
    torch.testing.assert_close(
        basis.T @ basis, torch.eye(5, dtype=torch.float64), atol=1e-13, rtol=0
    )


CONVS = {
    "2d-groups2-stride2-pad1": (
        lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=False),
        (3, 4, 6, 6),
    ),
    "1d-groups2-same-even-kernel-dil2": (
        lambda: nn.Conv1d(4, 6, 4, padding="same", dilation=2, groups=2, bias=False),
        (3, 4, 7),
    ),
}


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("case", sorted(CONVS))
def test_grouped_conv_span_equals_the_gram_of_its_im2col_patches(case):
    """Group 0's two channels are equal until step 8, then distinct (its span grows late);
    group 1 sees two equal constant signals (the padded zeros make its patches span more than
    one direction). The oracle is the eigendecomposition of the Gram of the explicit im2col
    patches (`patches`); the incremental span projects with a float64 conv."""
    make, shape = CONVS[case]
    span = InputSpan(make(), skip_full=False)
    fan_in = span.fan_in
    gen = _gen(1)
    gram = torch.zeros(2, fan_in, fan_in, dtype=torch.float64)
    for t in range(12):
        x = torch.randn(*shape, generator=gen)
        if t < 8:
            x[:, 1] = x[:, 0]
        const = torch.randn(shape[0], 2, *([1] * (len(shape) - 2)), generator=gen)
        x[:, 2:] = const  # constant per example and channel
        x[:, 3] = x[:, 2]  # and equal channels
        span.update(x)
        patches = span.patches(x)  # (2, M, F)
        gram += patches.transpose(1, 2) @ patches
        projector = span.complement_projector()
        for g in range(2):
            assert (projector[g] - _oracle_projector(gram[g])).abs().max() <= 1e-10
        if t == 7:
            assert span.dim[0] < fan_in
    assert span.dim[0] == fan_in and 1 < span.dim[1] < fan_in
    torch.testing.assert_close(span.gram(), gram, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rtol", [1e-10, 1e-6])
@pytest.mark.parametrize("factor, added", [(2.0, True), (0.5, False)])
def test_energy_outside_the_span_counts_relative_to_the_batch(rtol, factor, added):
    """Stated tolerance: a direction joins the span when its energy exceeds rtol · ‖X‖²_F of
    the batch that brings it. The first batch spans two directions of a random basis; the
    second holds, besides a direction in the span, one outside with factor · rtol of the
    batch's energy."""
    gen = _gen(2)
    b, _ = torch.linalg.qr(torch.randn(5, 5, generator=gen, dtype=torch.float64))
    span = InputSpan(nn.Linear(5, 2), rtol=rtol)
    span.update(torch.randn(8, 2, generator=gen, dtype=torch.float64) @ b[:, :2].T)
    assert span.dim == 2
    # Rows s·b1 and a·b3 with a² = f (s² + a²), f = factor · rtol: a² = f s² / (1 − f).
    f = factor * rtol
    s = 3.0
    a = (f * s**2 / (1 - f)) ** 0.5
    span.update(torch.stack([s * b[:, 0], a * b[:, 2]]))
    assert span.dim == (3 if added else 2)


def _count_projections(monkeypatch) -> list[int]:
    calls = []
    coords = InputSpan._coords

    def counted(self, x):
        calls.append(x.shape[0])
        return coords(self, x)

    monkeypatch.setattr(InputSpan, "_coords", counted)
    return calls


def test_a_full_layer_is_skipped_only_once_proven_full(monkeypatch):
    calls = _count_projections(monkeypatch)
    span = InputSpan(nn.Linear(3, 2))
    e = torch.eye(3, dtype=torch.float64)
    span.update(torch.stack([e[0], e[1]]))  # rank 2 of 3: not full
    span.update(torch.stack([e[0] + e[1], 2 * e[1]]))  # still rank 2: looked at
    assert span.dim == 2 and not span.full and len(calls) == 2 and span.n_skipped == 0
    span.update(torch.stack([e[2], e[0]]))  # full now; this batch was looked at
    assert span.dim == 3 and span.full and len(calls) == 3
    span.update(torch.full((4, 3), float("nan")))  # not looked at: NaNs cannot reach the span
    assert len(calls) == 3 and span.n_skipped == 4 and span.n_seen == 10
    torch.testing.assert_close(span.complement_projector(), torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="skip_full=False"):
        span.gram()


def test_a_group_that_is_full_does_not_stop_the_others(monkeypatch):
    calls = _count_projections(monkeypatch)
    conv = nn.Conv1d(2, 2, 1, groups=2, bias=False)  # fan-in 1 per group
    span = InputSpan(conv)
    x = torch.zeros(1, 2, 3)
    x[0, 0] = 1.0  # group 0 full, group 1 has seen only zeros
    span.update(x)
    span.update(x)
    assert span.dim == [1, 0] and len(calls) == 2 and span.n_skipped == 0
    x[0, 1] = 1.0
    span.update(x)
    span.update(x)
    assert span.dim == [1, 1] and len(calls) == 3 and span.n_skipped == 3


def test_without_skipping_the_gram_stays_exact(monkeypatch):
    calls = _count_projections(monkeypatch)
    x = torch.randn(6, 3, generator=_gen(3), dtype=torch.float64)
    span = InputSpan(nn.Linear(3, 2), skip_full=False)
    for chunk in x.split(2):
        span.update(chunk)
    assert span.full and len(calls) == 3 and span.n_skipped == 0
    torch.testing.assert_close(span.gram(), x.T @ x, rtol=1e-12, atol=1e-12)
