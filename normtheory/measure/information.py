"""Pairwise correlation and mutual information between neurons (claims IC-CORR, IC-MI).

All functions are pure, take activations ``acts`` of shape (N, d) (N samples, d neurons) as a
torch tensor (CPU or GPU; the work runs on its device) or a numpy array, and estimate every
pair at once: no Python loop over pairs. Results are `PairwiseResult`s in nats.

Estimators of I(X; Y):
    ``gaussian_copula`` (Ince et al. 2017, "A statistical framework for neuroimaging data
        analysis based on mutual information estimated via a Gaussian copula"): each neuron is
        mapped to normal scores z = Φ⁻¹(r / (N + 1)) with r its average rank (tied values, e.g.
        an atom at 0, share one score), then I = −½ log(1 − ρ²), ρ the Pearson correlation of
        the scores. Exact for Gaussian copulas, a lower bound otherwise, invariant to monotone
        transforms of each neuron; +inf for two neurons that are monotone maps of each other.
    ``binned``: equal-mass bins per neuron, plug-in MI of the joint histogram, Miller–Madow
        corrected (Miller 1955): each entropy gets + (B − 1) / (2N), B its occupied bins, so
        I_MM = I_plugin + (B_x + B_y − B_xy − 1) / (2N). Bin of a sample: ⌊n_bins · m / N⌋ with
        m the number of samples strictly smaller, so tied values share one bin and ties never
        create spurious structure. An atom — a neuron's most frequent value holding at least
        N / n_bins samples, e.g. the exact zeros after ReLU or dropout — gets a bin of its own
        and the other samples n_bins equal-mass bins among themselves (m counted among them),
        so an atom does not coarsen the resolution of the rest: with dropout of keep
        probability q the kept values are binned as finely as before, and the estimate keeps
        I(x̂; ŷ) = q² I(x; y) (IC-MI) instead of under-reading it. Default n_bins = round(1.25 N^(1/3)):
        20 at N = 4096, where the error for bivariate Gaussians stays ≤ 0.03 nats for |ρ| ≤ 0.6
        (round(N^(1/3)) = 16 reaches 0.03 at ρ = 0.6 over 20 seeds; 20 reaches 0.022).
        All joint histograms at once: counts = O Oᵀ with O the (d·n_bins, N) one-hot bin
        matrix, an exact int8 GEMM on CPU (float32 on GPU), in row blocks of the upper triangle.
    ``ksg``: Kraskov, Stögbauer & Grassberger 2004 (Phys. Rev. E 69, 066138), algorithm 1:
        I = ψ(N) + ψ(k) − ⟨ψ(n_x + 1)⟩ − ⟨ψ(n_y + 1)⟩, with ε_i the max-norm distance to the
        k-th neighbour of sample i in the joint space and n_x the samples with |x_j − x_i| < ε_i.
        Preprocessing as scikit-learn's ``mutual_info_regression``: each neuron divided by its
        standard deviation, plus 1e-10 · max(1, mean |x|) Gaussian jitter (from ``seed``) to
        break ties. Unlike scikit-learn negative estimates are kept (clipping at 0 biases
        means and the shuffle floor upwards). Exact k-NN from windows in sorted order that widen
        until provably exact (`_kth_maxnorm`): O(N √(kN)) per pair, batched over pairs as
        tensor ops, fast on GPU; on CPU 2-3x slower per pair than scikit-learn's KD-tree.

Degenerate neurons are reported, never silently turned into numbers: a constant ("dead")
neuron gets NaN in every entry of its row and column and is listed in ``dead``; ``atom_fraction``
is each neuron's fraction of samples equal to its most frequent value (e.g. exact zeros; -0.0
and +0.0 count as one value). NaN or inf in ``acts`` raise ValueError.

``n_shuffles > 0`` re-runs the estimator on data where each neuron's samples are permuted
independently (local generator from ``seed``, never the global RNG); the mean over shuffles is
``shuffle_floor``, the estimator's value at true independence, per pair.
"""

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from normtheory.checks import check_choice
from normtheory.measure._functional import generator

METHODS = ("gaussian_copula", "binned", "ksg")
_KSG_ALL_PAIRS_MAX_NEURONS = 16  # above this, ksg needs explicit `pairs` (it costs ~N^1.5 each)
_BLOCK = 1 << 24  # elements per temporary in chunked computations (128 MiB in float64)


@dataclass(frozen=True)
class PairwiseResult:
    """A matrix of pairwise dependence between neurons.

    Attributes:
        matrix: (m, m) float64, symmetric; row/column a are neuron ``neurons[a]``. The diagonal
            is 1 for correlation and NaN for mutual information (infinite for continuous
            variables). NaN also marks dead neurons and, when ``pairs`` was given, every pair
            not asked for.
        neurons: (m,) int64 column indices into ``acts`` of the rows of ``matrix``.
        method: ``"pearson"`` or the MI estimator.
        dead: column indices (into ``acts``) of constant neurons.
        atom_fraction: (m,) fraction of samples equal to each neuron's most frequent value.
        shuffle_floor: (m, m) mean estimate over ``n_shuffles`` independent permutations of each
            neuron (NaN where ``matrix`` is), or None when ``n_shuffles == 0``.
        n_samples: N.
        pairs: (P, 2) positions (rows of ``matrix``) of the pairs asked for, or None (all).
    """

    matrix: Tensor
    neurons: Tensor
    method: str
    dead: list[int]
    atom_fraction: Tensor
    shuffle_floor: Tensor | None
    n_samples: int
    pairs: Tensor | None = None


def upper(result: PairwiseResult) -> Tensor:
    """Off-diagonal upper-triangle entries of ``result.matrix`` with NaNs dropped (for means)."""
    m = result.matrix.shape[0]
    i, j = torch.triu_indices(m, m, offset=1, device=result.matrix.device)
    values = result.matrix[i, j]
    return values[~values.isnan()]


def mean_offdiag(result: PairwiseResult) -> float:
    """Mean over the off-diagonal pairs that have a value (NaN if none has)."""
    values = upper(result)
    return float(values.mean()) if values.numel() else math.nan


def pairwise_correlation(acts: Tensor | np.ndarray, *, neurons=None) -> PairwiseResult:
    """Pearson correlation of all pairs of neurons, r = ⟨x̃, ỹ⟩ / (‖x̃‖ ‖ỹ‖), x̃ = x − mean.

    Args:
        acts: (N, d) activations.
        neurons: optional column indices; the matrix covers only these.
    """
    xt, cols, _ = _prepare(acts, neurons, None)
    atoms = _atoms(_ranks(xt))
    dead = atoms == 1.0
    matrix = _correlation(xt.to(torch.float64).contiguous())
    matrix.fill_diagonal_(1.0)
    matrix[dead, :] = math.nan
    matrix[:, dead] = math.nan
    return PairwiseResult(matrix, cols, "pearson", cols[dead].tolist(), atoms, None, xt.shape[1])


def pairwise_mutual_information(
    acts: Tensor | np.ndarray,
    *,
    method: str = "gaussian_copula",
    neurons=None,
    pairs=None,
    n_bins: int | None = None,
    k: int = 3,
    n_shuffles: int = 0,
    seed: int = 0,
) -> PairwiseResult:
    """Mutual information (nats) between pairs of neurons; see the module docstring.

    Args:
        acts: (N, d) activations.
        method: ``"gaussian_copula"`` (fast lower bound), ``"binned"`` (Miller–Madow plug-in)
            or ``"ksg"`` (k-NN, expensive: pass ``pairs`` when d > 16).
        neurons: optional column indices; the matrix covers only these.
        pairs: optional (P, 2) column indices (list of tuples or array) of the pairs wanted.
            ``ksg`` estimates only these; the fast methods compute all and keep these. Without
            ``neurons`` the matrix covers the neurons that appear in ``pairs``.
        n_bins: bins per neuron for ``binned`` (default round(1.25 N^(1/3)), 20 at N = 4096).
        k: neighbours for ``ksg``.
        n_shuffles: permutation baselines to average into ``shuffle_floor``.
        seed: seeds the local generator for the ksg jitter and the shuffles.
    """
    check_choice("method", method, METHODS)
    xt, cols, pos = _prepare(acts, neurons, pairs)
    m, n = xt.shape
    if method == "binned":
        n_bins = _default_bins(n) if n_bins is None else int(n_bins)
        if not 2 <= n_bins <= n:
            raise ValueError(f"n_bins must be in [2, N={n}], got {n_bins}")
    if method == "ksg":
        if not 1 <= k < n:
            raise ValueError(f"k must be in [1, N={n}), got {k}")
        if pos is None and m > _KSG_ALL_PAIRS_MAX_NEURONS:
            raise ValueError(
                f"ksg over all pairs of {m} neurons is too expensive: pass `pairs` (e.g. the top "
                f"pairs of a fast method) or at most {_KSG_ALL_PAIRS_MAX_NEURONS} `neurons`"
            )
    ranks = _ranks(xt)
    atoms = _atoms(ranks)
    dead = atoms == 1.0
    keep = torch.ones(m, m, dtype=torch.bool, device=xt.device)
    if pos is not None:
        keep = torch.zeros_like(keep)
        keep[pos[:, 0], pos[:, 1]] = True
        keep |= keep.T.clone()
    keep[dead, :] = False
    keep[:, dead] = False
    keep.fill_diagonal_(False)
    todo = keep.triu().nonzero()  # (P, 2) pairs that ksg estimates
    gen = generator(xt.device, seed)

    def estimate(data: Tensor, r: _Ranks) -> Tensor:
        if method == "gaussian_copula":
            return _copula_mi(r)
        if method == "binned":
            return _binned_mi(r, n_bins)
        return _ksg_mi(data, todo, k, gen)

    x64 = xt.to(torch.float64).contiguous() if method == "ksg" else xt
    matrix = estimate(x64, ranks)
    floor = None
    if n_shuffles > 0:
        floor = torch.zeros_like(matrix)
        for _ in range(n_shuffles):
            # shuffled[a, perm[a, s]] = x[a, s]: the sorted values stay, only the order moves
            perm = _sort_rows(torch.rand(m, n, generator=gen, device=xt.device))[1]
            moved = ranks._replace(order=perm.gather(1, ranks.order))
            data = torch.empty_like(x64).scatter_(1, perm, x64) if method == "ksg" else x64
            floor += estimate(data, moved)
        floor /= n_shuffles
    matrix, floor = (None if t is None else t.masked_fill(~keep, math.nan) for t in (matrix, floor))
    return PairwiseResult(matrix, cols, method, cols[dead].tolist(), atoms, floor, n, pos)


def _default_bins(n: int) -> int:
    return max(2, round(1.25 * n ** (1 / 3)))


def _prepare(acts, neurons, pairs) -> tuple[Tensor, Tensor, Tensor | None]:
    """(m, N) data (neurons as rows), its (m,) column indices and (P, 2) pair positions or None.

    NaN and inf are caught later, by `_ranks`, at the ends of the sorted rows.
    """
    x = torch.as_tensor(acts.detach() if isinstance(acts, Tensor) else np.asarray(acts))
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"acts must be (N, d) with N >= 2, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(torch.float64)
    d, dev = x.shape[1], x.device
    pair_cols = None
    if pairs is not None:
        pair_cols = torch.as_tensor(np.asarray(pairs), dtype=torch.int64).to(dev).reshape(-1, 2)
        if ((pair_cols < 0) | (pair_cols >= d)).any():
            raise ValueError(f"pairs must index columns of acts, in [0, {d})")
    if neurons is not None:
        cols = torch.as_tensor(np.asarray(neurons), dtype=torch.int64).to(dev).reshape(-1)
    elif pair_cols is not None:
        cols = pair_cols.unique()
    else:
        cols = torch.arange(d, device=dev)
    if ((cols < 0) | (cols >= d)).any() or cols.unique().numel() != cols.numel():
        raise ValueError(f"neurons must be distinct column indices in [0, {d})")
    pos = None
    if pair_cols is not None:
        lookup = torch.full((d,), -1, dtype=torch.int64, device=dev)
        lookup[cols] = torch.arange(cols.numel(), device=dev)
        pos = lookup[pair_cols]
        if (pos < 0).any():
            raise ValueError("every neuron in `pairs` must be among `neurons`")
        pos = pos.sort(dim=1).values  # (P, 2), i < j
        if (pos[:, 0] == pos[:, 1]).any():
            raise ValueError("pairs must join two different neurons")
    if neurons is not None or pairs is not None:
        x = x[:, cols]
    return x.T, cols, pos  # a view: the sort makes the contiguous copy


class _Ranks(NamedTuple):
    """Tie structure of each row, by sorted position p. Rows without ties have start = p and
    end = p + 1; only the rows with ties store theirs."""

    order: Tensor  # (m, N) sample at position p
    tied: Tensor  # (t,) rows with ties
    start: Tensor  # (t, N) samples strictly smaller than the one at p
    end: Tensor  # (t, N) samples smaller or equal


def _sort_rows(t: Tensor) -> tuple[Tensor, Tensor]:
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


_INF_CODES = (-2139095041, 2139095040)  # codes of -inf and +inf in `_sort_rows`


def _ranks(xt: Tensor) -> _Ranks:
    keys, order = _sort_rows(xt)
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
    return _Ranks(order, tied, start, end)


def _by_position(r: _Ranks, fn) -> Tensor:
    """(m, N) fn(start, end) at each sorted position, computed once for all rows without ties."""
    m, n = r.order.shape
    position = torch.arange(n, device=r.order.device)
    out = fn(position, position + 1).expand(m, n).clone()
    out[r.tied] = fn(r.start, r.end)
    return out


def _atoms(r: _Ranks) -> Tensor:
    m, n = r.order.shape
    atoms = torch.full((m,), 1.0 / n, dtype=torch.float64, device=r.order.device)
    atoms[r.tied] = (r.end - r.start).amax(dim=1).to(torch.float64) / n
    return atoms


def _in_sample_order(r: _Ranks, values: Tensor) -> Tensor:
    return torch.empty_like(values).scatter_(1, r.order, values)


def _correlation(rows: Tensor) -> Tensor:
    """(m, m) Pearson matrix of the rows of (m, N) `rows`; NaN rows for constant ones."""
    xc = rows - rows.mean(dim=1, keepdim=True)
    xc = xc / xc.norm(dim=1, keepdim=True)
    r = (xc @ xc.T).clamp_(-1.0, 1.0)
    return 0.5 * (r + r.T)  # BLAS need not return an exactly symmetric product


def _copula_mi(r: _Ranks) -> Tensor:
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


def _bins(r: _Ranks, n_bins: int) -> Tensor:
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


def _binned_mi(r: _Ranks, n_bins: int) -> Tensor:
    m, n = r.order.shape
    dev = r.order.device
    bins = _bins(r, n_bins)
    n_bins += 1  # the atoms' bins
    cells = _in_sample_order(r, bins) + torch.arange(m, device=dev)[:, None] * n_bins  # (m, N)
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
    rows = max(1, min(math.ceil(m / 8), _BLOCK // (m * n_bins * n_bins)))
    for a in range(0, m, rows):
        b = min(a + rows, m)
        left, right = onehot[a * n_bins : b * n_bins], onehot[a * n_bins :].T
        counts = torch._int_mm(left, right) if dtype == torch.int8 else (left @ right).int()
        h_xy = entropy_mm(counts.view(b - a, n_bins, m - a, n_bins), (1, 3))
        mi[a:b, a:] = h[a:b, None] + h[None, a:] - h_xy
    return mi.triu() + mi.triu(1).T  # exactly symmetric


def _ksg_mi(xt: Tensor, pos: Tensor, k: int, gen: torch.Generator) -> Tensor:
    m, n = xt.shape
    mi = torch.full((m, m), math.nan, dtype=torch.float64, device=xt.device)
    if pos.numel() == 0:
        return mi
    std = xt.std(dim=1, correction=0, keepdim=True)
    x = xt / torch.where(std > 0, std, 1.0)
    noise = torch.randn(m, n, generator=gen, dtype=x.dtype, device=x.device)
    x = x + 1e-10 * x.abs().mean(dim=1, keepdim=True).clamp(min=1.0) * noise
    srt, order = _sort_rows(x)  # (m, N) each
    const = math.fsum(torch.special.digamma(torch.tensor([n, k], dtype=torch.float64)).tolist())
    for chunk in pos.split(max(1, _BLOCK // (16 * n))):
        i, j = chunk[:, 0], chunk[:, 1]
        xs, ys = srt[i], x[j].gather(1, order[i])  # (P, N), in x-sorted order
        eps = _kth_maxnorm(xs, ys, k)
        nx = _strict_count(xs, xs, eps) - 1  # minus the sample itself
        ny = _strict_count(srt[j], ys, eps) - 1
        psi = torch.special.digamma((nx + 1).to(torch.float64)).mean(1)
        psi = psi + torch.special.digamma((ny + 1).to(torch.float64)).mean(1)
        mi[i, j] = mi[j, i] = const - psi
    return mi


def _kth_maxnorm(xs: Tensor, ys: Tensor, k: int, half: int | None = None) -> Tensor:
    """(P, N) max-norm distance of each sample to its k-th nearest other sample, exactly.

    `xs` is sorted along dim 1, `ys` in the same order. Sample i is compared with the `half`
    neighbours on each side in x order; every sample outside that window is at least `gap` (x
    distance to the window's edge) away, so the window's k-th distance is exact when ≤ gap.
    The default half-width √(kN) is about the x-strip count of a KSG ball, so few samples fail
    (~8 % for a Gaussian pair). Those are tried in y order, which rescues the samples inside an
    atom of x (jittered ties: x order is random there), then again in both orders with 4×
    wider windows, until a window spans all samples.
    """
    p, n = xs.shape
    half = min(n - 1, max(k, math.ceil(math.sqrt(k * n))) if half is None else max(k, half))
    kth, ok = _window_kth(xs, ys, k, half)  # every sample, x order
    eps = kth.view(p, n)
    rows, pos = (~ok).view(p, n).nonzero(as_tuple=True)  # samples still to do
    if rows.numel():
        y_sorted, y_order = _sort_rows(ys)
        x_by_y = xs.gather(1, y_order)
        y_pos = torch.empty_like(y_order).scatter_(
            1, y_order, torch.arange(n, device=xs.device).expand(p, n)
        )
    while rows.numel():
        kth, ok = _window_kth(y_sorted, x_by_y, k, half, rows, y_pos[rows, pos])  # y order
        eps[rows[ok], pos[ok]] = kth[ok]
        rows, pos = rows[~ok], pos[~ok]
        half = min(4 * half, n - 1)
        if rows.numel():
            kth, ok = _window_kth(xs, ys, k, half, rows, pos)  # x order, wider
            eps[rows[ok], pos[ok]] = kth[ok]
            rows, pos = rows[~ok], pos[~ok]
    return eps


def _window_kth(
    u: Tensor, v: Tensor, k: int, half: int, rows: Tensor | None = None, pos: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """k-th max-norm neighbour distance among the `half` neighbours on each side in the order
    of `u` (rows of (P, N) sorted), and whether it is provably exact; flat, for all entries or
    for entries (rows, pos) only."""
    p, n = u.shape
    pad = u.new_full((p, half + 1), math.inf)
    # pad (-inf, +inf): out-of-range neighbours are infinitely far and their gaps infinite
    up, vp = torch.cat([-pad, u, pad], dim=1), torch.cat([pad, v, pad], dim=1)  # (P, N + 2h + 2)
    uw, vw = up.unfold(1, 2 * half + 1, 1), vp.unfold(1, 2 * half + 1, 1)  # windows, as views

    def select(wu: Tensor, wv: Tensor, cu: Tensor, cv: Tensor, lo: Tensor, hi: Tensor):
        dist = torch.maximum((wu - cu[..., None]).abs(), (wv - cv[..., None]).abs())
        # the sample itself is at distance 0, so the (k + 1)-th smallest is the k-th neighbour
        d_k = dist.topk(k + 1, dim=-1, largest=False).values[..., -1]
        return d_k, d_k <= torch.minimum(cu - lo, hi - cu)

    out = []
    if rows is None:  # all entries: the windows stay views, nothing is copied
        step = max(1, _BLOCK // (4 * n * (2 * half + 1)))
        for a in range(0, p, step):
            s = slice(a, a + step)
            out.append(
                select(
                    uw[s, 1 : n + 1], vw[s, 1 : n + 1], u[s], v[s], up[s, :n], up[s, 2 * half + 2 :]
                )
            )
    else:
        step = max(1, _BLOCK // (4 * (2 * half + 1)))
        for a in range(0, rows.numel(), step):
            r, i = rows[a : a + step], pos[a : a + step]  # window of i starts at padded i + 1
            out.append(
                select(
                    uw[r, i + 1], vw[r, i + 1], u[r, i], v[r, i], up[r, i], up[r, i + 2 * half + 2]
                )
            )
    return torch.cat([d.reshape(-1) for d, _ in out]), torch.cat([o.reshape(-1) for _, o in out])


def _strict_count(srt: Tensor, v: Tensor, eps: Tensor) -> Tensor:
    """(P, N) number of entries of each sorted row of `srt` with |s − v| < eps (self included).

    fl(s − v) is monotone in s, so the set is a contiguous run of `srt`; searchsorted on v ± eps
    finds it up to rounding, and one exact check at each end repairs that (it matters for the
    k-th neighbour itself, which lies at exactly eps in one coordinate).
    """
    n = srt.shape[1]

    def inside(index: Tensor) -> Tensor:
        return (srt.gather(1, index.clamp(0, n - 1)) - v).abs() < eps

    lo = torch.searchsorted(srt, v - eps, side="right")
    hi = torch.searchsorted(srt, v + eps, side="left")
    lo = lo - ((lo > 0) & inside(lo - 1)).long()
    hi = hi + ((hi < n) & inside(hi)).long()
    lo = lo + ((lo < hi) & ~inside(lo)).long()
    hi = hi - ((hi > lo) & ~inside(hi - 1)).long()
    return hi - lo


# -- the IC layer: what dropout does to pairwise dependence --------------------------------------


@dataclass(frozen=True)
class DropoutRatios:
    """How much element-wise dropout of keep probability q shrinks pairwise dependence.

    Attributes:
        keep: q.
        corr: slope through the origin of corr(x̂_i, x̂_j) on corr(x_i, x_j) over all pairs,
            Σ ρ̂ ρ / Σ ρ² (IC-CORR: q when E[x] = 0).
        mi: the same for binned MI (IC-MI: q² when no unit has mass at 0).
        corr_before, mi_before: mean |corr| and mean MI over pairs before dropout.
        n_samples: examples × masks behind the "after" estimates.
    """

    keep: float
    corr: float
    mi: float
    corr_before: float
    mi_before: float
    n_samples: int


def dropout_ratios(
    acts: Tensor | np.ndarray,
    keep: float,
    *,
    n_masks: int = 16,
    n_bins: int | None = None,
    seed: int = 0,
) -> DropoutRatios:
    """Pairwise correlation and MI of `acts` (N, d) before and after dropout with keep prob q.

    Each example is repeated `n_masks` times with independent Bernoulli(q) masks (scaled by
    1/q, as ``nn.Dropout(p=1 − q)`` in training). MI is binned with the same `n_bins` before
    and after (default round(1.25 N^(1/3)) for the N distinct examples), the dropout atom in a
    bin of its own, and "before" is estimated on the same N · n_masks rows (the examples
    repeated, i.e. q = 1), so both estimates are of the same discretization of the same
    examples with the same bias correction, and the ratio is not biased by them. Masks come from a local generator (`seed`).
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep!r}")
    if n_masks < 1:
        raise ValueError(f"n_masks must be >= 1, got {n_masks!r}")
    x = torch.as_tensor(acts)
    if x.ndim != 2:
        raise ValueError(f"acts must have shape (N, d), got {tuple(x.shape)}")
    n_bins = n_bins or _default_bins(x.shape[0])
    gen = torch.Generator().manual_seed(seed)
    tiled = x.repeat(n_masks, 1)
    mask = (torch.rand(tiled.shape, generator=gen, dtype=torch.float64) < keep).to(x.device)
    after = tiled * mask.to(tiled.dtype) / keep
    c0, c1 = upper(pairwise_correlation(x)), upper(pairwise_correlation(after))
    # "before" on the same N · n_masks rows (the q = 1 case): the same Miller–Madow terms
    m0 = upper(pairwise_mutual_information(tiled, method="binned", n_bins=n_bins))
    m1 = upper(pairwise_mutual_information(after, method="binned", n_bins=n_bins))
    if c0.numel() != c1.numel() or m0.numel() != m1.numel():
        raise ValueError("dropout made a unit constant (all dropped); use more examples or masks")
    return DropoutRatios(
        keep=float(keep),
        corr=float((c0 * c1).sum() / c0.square().sum()),
        mi=float((m0 * m1).sum() / m0.square().sum()),
        corr_before=float(c0.abs().mean()),
        mi_before=float(m0.mean()),
        n_samples=after.shape[0],
    )
