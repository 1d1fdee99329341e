"""Ranks of each neuron's samples, and the two MI estimators that see the data only through them.

Private to `normtheory.measure.information`, whose module docstring defines the estimators.
Neurons are rows: (m, N) data, m neurons, N samples. A row is sorted once (`sort_rows`) and its
tie structure kept (`Ranks`); ties matter, since an atom (e.g. the exact zeros after ReLU or
dropout) must share one rank and one bin.

``gaussian_copula`` (`copula_mi`): normal scores of the average ranks, their Pearson ρ, and
I = −½ log(1 − ρ²). ``binned`` (`binned_mi`): equal-mass bins by rank, an atom in a bin of its
own (`_bins`), all joint histograms at once: counts = O Oᵀ with O the (m·n_bins, N) one-hot bin
matrix, an exact int8 GEMM on CPU (float32 on GPU), in row blocks of the upper triangle; then
Miller–Madow corrected plug-in entropies.
"""

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

BLOCK = 1 << 24  # elements per temporary in chunked computations (128 MiB in float64)


def default_bins(n: int) -> int:
    """Bins per neuron for N = n samples: round(1.25 N^(1/3)), at least 2 (20 at N = 4096)."""
    return max(2, round(1.25 * n ** (1 / 3)))


class Ranks(NamedTuple):
    """Tie structure of each row, by sorted position p. Rows without ties have start = p and
    end = p + 1; only the rows with ties store theirs."""

    order: Tensor  # (m, N) sample at position p
    tied: Tensor  # (t,) rows with ties
    start: Tensor  # (t, N) samples strictly smaller than the one at p
    end: Tensor  # (t, N) samples smaller or equal


def sort_rows(t: Tensor) -> tuple[Tensor, Tensor]:
    """Sorts each row: (keys, order), keys the sorted values or order-preserving integer codes
    (NaN beyond ±inf). -0.0 and +0.0 come out tied (dropout of a negative value gives -0.0)."""
    if t.device.type != "cpu":
        return (t + 0).sort(dim=1)  # + 0 maps -0.0 to +0.0
    if t.dtype in (torch.float16, torch.bfloat16, torch.float32):
        # torch's CPU sort is ~10x slower than numpy's SIMD sort, which sorts values only: pack
        # an order-preserving int32 code of the value over the sample index into one int64
        bits = torch.add(t, 0.0, out=torch.empty(t.shape, dtype=torch.float32))
        bits = bits.view(torch.int32)  # a fresh contiguous copy, changed in place below
        bits ^= (bits >> 31) & 0x7FFFFFFF  # negative floats: flip the magnitude bits
        packed = bits.long()
        packed <<= 32
        packed |= torch.arange(t.shape[1])
        packed.numpy().sort(axis=1)
        return packed >> 32, packed & 0xFFFFFFFF
    order = torch.from_numpy(np.argsort((t + 0).contiguous().numpy(), axis=1))
    return t.gather(1, order), order


_INF_CODES = (-2139095041, 2139095040)  # codes of -inf and +inf in `sort_rows`


def rank_rows(xt: Tensor) -> Ranks:
    """The `Ranks` of each row of (m, N) `xt`.

    Raises:
        ValueError: `xt` holds NaN or inf (found at the ends of the sorted rows).
    """
    keys, order = sort_rows(xt)
    ends = keys[:, [0, -1]]  # NaN sorts last (or first, with its sign bit set)
    finite = (
        ends.isfinite()
        if keys.is_floating_point()
        else (ends > _INF_CODES[0]) & (ends < _INF_CODES[1])
    )
    if not finite.all():
        raise ValueError("acts contains NaN or inf")
    n = keys.shape[1]
    first = torch.ones_like(keys, dtype=torch.bool)
    torch.ne(keys[:, 1:], keys[:, :-1], out=first[:, 1:])  # a new value starts here
    tied = (~first.all(dim=1)).nonzero().squeeze(1)
    first = first[tied]
    last = torch.ones_like(first)
    last[:, :-1] = first[:, 1:]
    position = torch.arange(n, device=keys.device)
    start = torch.where(first, position, 0).cummax(dim=1).values
    end = torch.where(last, position + 1, n).flip(1).cummin(dim=1).values.flip(1)
    return Ranks(order, tied, start, end)


def _by_position(r: Ranks, fn) -> Tensor:
    """(m, N) fn(start, end) at each sorted position, computed once for all rows without ties."""
    m, n = r.order.shape
    position = torch.arange(n, device=r.order.device)
    out = fn(position, position + 1).expand(m, n).clone()
    out[r.tied] = fn(r.start, r.end)
    return out


def atoms(r: Ranks) -> Tensor:
    """(m,) float64 fraction of each row's samples equal to its most frequent value."""
    m, n = r.order.shape
    fractions = torch.full((m,), 1.0 / n, dtype=torch.float64, device=r.order.device)
    fractions[r.tied] = (r.end - r.start).amax(dim=1).to(torch.float64) / n
    return fractions


def _in_sample_order(r: Ranks, values: Tensor) -> Tensor:
    return torch.empty_like(values).scatter_(1, r.order, values)


def copula_mi(r: Ranks) -> Tensor:
    """(m, m) Gaussian-copula MI: −½ log(1 − ρ²), ρ of the normal scores Φ⁻¹(r / (N + 1))."""
    n = r.order.shape[1]
    # normal score of the average rank (start + end + 1) / 2, looked up by s = start + end
    s = torch.arange(2 * n + 1, dtype=torch.float64, device=r.order.device)
    table = torch.special.ndtri((s + 1) / (2 * (n + 1)))
    z = _in_sample_order(r, _by_position(r, lambda lo, hi: table[lo + hi]))
    # Gram form, no centred copy: the scores are bounded and their means near 0
    mean, gram = z.mean(dim=1), z @ z.T / n
    cov = gram - mean[:, None] * mean[None, :]
    sd = cov.diagonal().sqrt()
    rho = (cov / sd[:, None] / sd[None, :]).clamp_(-1.0, 1.0)
    rho = 0.5 * (rho + rho.T)
    return -0.5 * torch.log1p(-rho.square())


def _bins(r: Ranks, n_bins: int) -> Tensor:
    """(m, N) bin of each sorted position: ⌊n_bins · lo / N⌋ (lo: samples strictly smaller);
    in a row whose largest tie group (its atom) holds at least N / n_bins samples, the atom gets
    bin n_bins of its own and the other samples equal-mass bins among themselves."""
    m, n = r.order.shape
    position = torch.arange(n, device=r.order.device)
    bins = torch.div(position * n_bins, n, rounding_mode="floor").expand(m, n).clone()
    if len(r.tied):
        lo, size = r.start, r.end - r.start  # (t, N)
        top = size.argmax(dim=1, keepdim=True)
        a_lo, mass = lo.gather(1, top), size.gather(1, top)  # (t, 1)
        atom = mass * n_bins >= n
        rest = torch.where(atom, n - mass, n).clamp(min=1)
        lo_rest = torch.where(atom & (lo > a_lo), lo - mass, lo)
        tied_bins = torch.div(lo_rest * n_bins, rest, rounding_mode="floor")
        bins[r.tied] = torch.where(atom & (lo == a_lo), n_bins, tied_bins)
    return bins


def binned_mi(r: Ranks, n_bins: int) -> Tensor:
    """(m, m) Miller–Madow binned MI, I_MM = I_plugin + (B_x + B_y − B_xy − 1) / (2N)."""
    return codes_mi(_in_sample_order(r, _bins(r, n_bins)), n_bins + 1)  # + the atoms' bins


def bin_codes(xt: Tensor, n_bins: int) -> Tensor:
    """(m, N) bin of each sample of (m, N) `xt` as `binned_mi` bins it (in [0, n_bins])."""
    r = rank_rows(xt)
    return _in_sample_order(r, _bins(r, n_bins))


def codes_mi(codes: Tensor, n_bins: int) -> Tensor:
    """(m, m) Miller–Madow MI of (m, N) integer codes in [0, n_bins): the plug-in MI of the
    joint histograms plus (B_x + B_y − B_xy − 1) / (2N), B the occupied cells."""
    m, n = codes.shape
    dev = codes.device
    cells = (codes + torch.arange(m, device=dev)[:, None] * n_bins).contiguous()  # (m, N)
    # one-hot (m·B, N); joint counts = one-hot @ one-hotᵀ, exact: int8 GEMM with int32 output
    # on CPU (~4x float32 there), float32 on GPU (integers exact up to 2^24 samples)
    dtype = torch.int8 if dev.type == "cpu" else torch.float32
    onehot = torch.zeros(m * n_bins, n, dtype=dtype, device=dev).scatter_(0, cells, 1)
    xlogx = torch.xlogy(*(torch.arange(n + 1, dtype=torch.float64, device=dev),) * 2)

    def entropy_mm(counts: Tensor, dim) -> Tensor:  # integer counts -> H_MM (nats) over dim
        plugin = math.log(n) - xlogx[counts].sum(dim) / n
        return plugin + ((counts > 0).sum(dim) - 1).to(torch.float64) / (2 * n)

    h = entropy_mm(torch.bincount(cells.view(-1), minlength=m * n_bins).view(m, n_bins), -1)
    mi = torch.zeros(m, m, dtype=torch.float64, device=dev)
    # row blocks of the upper block-triangle: ~half the flops of the full symmetric product
    rows = max(1, min(math.ceil(m / 8), BLOCK // (m * n_bins * n_bins)))
    for a in range(0, m, rows):
        b = min(a + rows, m)
        left, right = onehot[a * n_bins : b * n_bins], onehot[a * n_bins :].T
        counts = torch._int_mm(left, right) if dtype == torch.int8 else (left @ right).int()
        h_xy = entropy_mm(counts.view(b - a, n_bins, m - a, n_bins), (1, 3))
        mi[a:b, a:] = h[a:b, None] + h[None, a:] - h_xy
    return mi.triu() + mi.triu(1).T  # exactly symmetric
