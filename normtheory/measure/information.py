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
        All joint histograms at once, by one exact integer GEMM (`_rank`).
    ``ksg``: Kraskov, Stögbauer & Grassberger 2004 (Phys. Rev. E 69, 066138), algorithm 1:
        I = ψ(N) + ψ(k) − ⟨ψ(n_x + 1)⟩ − ⟨ψ(n_y + 1)⟩, with ε_i the max-norm distance to the
        k-th neighbour of sample i in the joint space and n_x the samples with |x_j − x_i| < ε_i.
        Preprocessing as scikit-learn's ``mutual_info_regression``: each neuron divided by its
        standard deviation, plus 1e-10 · max(1, mean |x|) Gaussian jitter (from ``seed``) to
        break ties. Unlike scikit-learn negative estimates are kept (clipping at 0 biases
        means and the shuffle floor upwards). Exact k-NN from a few candidates per sample, windows
        where those cannot prove it (`_ksg`); on one CPU thread ~2x faster per pair than
        scikit-learn's KD-tree.

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

import numpy as np
import torch
from torch import Tensor

from normtheory.checks import check_choice
from normtheory.measure import _ksg, _rank
from normtheory.measure._functional import generator

METHODS = ("gaussian_copula", "binned", "ksg")
_KSG_ALL_PAIRS_MAX_NEURONS = 32  # above this, ksg needs explicit `pairs` (~10 ms each at N = 4096)


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
    atoms = _rank.atoms(_rank.rank_rows(xt))
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
            or ``"ksg"`` (k-NN, expensive: pass ``pairs`` when d > 32).
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
        n_bins = _rank.default_bins(n) if n_bins is None else int(n_bins)
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
    ranks = _rank.rank_rows(xt)
    atoms = _rank.atoms(ranks)
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

    def estimate(data: Tensor, r: _rank.Ranks) -> Tensor:
        if method == "gaussian_copula":
            return _rank.copula_mi(r)
        if method == "binned":
            return _rank.binned_mi(r, n_bins)
        return _ksg.ksg_mi(data, todo, k, gen)

    x64 = xt.to(torch.float64).contiguous() if method == "ksg" else xt
    matrix = estimate(x64, ranks)
    floor = None
    if n_shuffles > 0:
        floor = torch.zeros_like(matrix)
        for _ in range(n_shuffles):
            # shuffled[a, perm[a, s]] = x[a, s]: the sorted values stay, only the order moves
            perm = _rank.sort_rows(torch.rand(m, n, generator=gen, device=xt.device))[1]
            moved = ranks._replace(order=perm.gather(1, ranks.order))
            data = torch.empty_like(x64).scatter_(1, perm, x64) if method == "ksg" else x64
            floor += estimate(data, moved)
        floor /= n_shuffles
    matrix, floor = (None if t is None else t.masked_fill(~keep, math.nan) for t in (matrix, floor))
    return PairwiseResult(matrix, cols, method, cols[dead].tolist(), atoms, floor, n, pos)


def _prepare(acts, neurons, pairs) -> tuple[Tensor, Tensor, Tensor | None]:
    """(m, N) data (neurons as rows), its (m,) column indices and (P, 2) pair positions or None.

    NaN and inf are caught later, by `_rank.rank_rows`, at the ends of the sorted rows.
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


def _correlation(rows: Tensor) -> Tensor:
    """(m, m) Pearson matrix of the rows of (m, N) `rows`; NaN rows for constant ones."""
    xc = rows - rows.mean(dim=1, keepdim=True)
    xc = xc / xc.norm(dim=1, keepdim=True)
    r = (xc @ xc.T).clamp_(-1.0, 1.0)
    return 0.5 * (r + r.T)  # BLAS need not return an exactly symmetric product
