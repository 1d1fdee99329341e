"""Pairwise correlation and mutual information (IC-CORR, IC-MI): checked against the closed form
for Gaussians, scikit-learn's KSG, numpy, brute-force k-NN and a naive loop over pairs, plus dead
neurons, atoms at zero, shuffle floors and the dropout factor of IC-CORR."""

import math

import numpy as np
import pytest
import torch
from scipy.special import digamma, ndtri
from scipy.stats import rankdata
from sklearn.feature_selection import mutual_info_regression

from normtheory.measure.information import (
    METHODS,
    PairwiseResult,
    _kth_maxnorm,
    mean_offdiag,
    pairwise_correlation,
    pairwise_mutual_information,
    upper,
)

N = 4096


pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian_pair(rho: float, n: int = N, seed: int = 0) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal((n, 2))
    return np.c_[z[:, 0], rho * z[:, 0] + math.sqrt(1 - rho**2) * z[:, 1]]  # (n, 2)


def gaussian_mi(rho: float) -> float:
    return -0.5 * math.log(1 - rho**2)


def mixed_neurons(n: int = N, seed: int = 0) -> np.ndarray:
    """(n, 5): correlated Gaussians, one ReLU'd (atom at 0), one rounded (many ties)."""
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, 2)) @ g.standard_normal((2, 5)) + g.standard_normal((n, 5))
    x[:, 1] = np.maximum(x[:, 1], 0.0)
    x[:, 3] = np.round(x[:, 3])
    return x


def mi01(x, **kw) -> float:
    return float(pairwise_mutual_information(x, **kw).matrix[0, 1])


# --- oracles: one pair at a time, written from the formulas ---


def binned_scalar(x: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    """Plug-in MI of equal-mass bins (ties share a bin; an atom of ≥ n / n_bins samples gets a
    bin of its own, the rest equal-mass bins among themselves) with Miller–Madow per entropy."""
    n = len(x)

    def bins(v):
        values, counts = np.unique(v, return_counts=True)
        atom, mass = values[counts.argmax()], counts.max()
        if mass * n_bins < n:
            return np.searchsorted(np.sort(v), v, side="left") * n_bins // n
        rest = np.sort(v[v != atom])
        out = np.searchsorted(rest, v, side="left") * n_bins // (n - mass)
        return np.where(v == atom, n_bins, out)

    joint = np.zeros((n_bins + 1, n_bins + 1))
    np.add.at(joint, (bins(x), bins(y)), 1.0)

    def h_mm(c):
        c = c[c > 0]
        return -np.sum(c / n * np.log(c / n)) + (len(c) - 1) / (2 * n)

    return h_mm(joint.sum(1)) + h_mm(joint.sum(0)) - h_mm(joint.ravel())


def copula_scalar(x: np.ndarray, y: np.ndarray) -> float:
    n = len(x)
    rho = np.corrcoef(ndtri(rankdata(x) / (n + 1)), ndtri(rankdata(y) / (n + 1)))[0, 1]
    return -0.5 * math.log(1 - rho**2)


def ksg_brute(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """KSG algorithm 1 by O(N^2) distances on std-scaled data (no jitter needed without ties)."""
    x, y = x / x.std(), y / y.std()
    dx, dy = np.abs(x[:, None] - x[None]), np.abs(y[:, None] - y[None])
    d = np.maximum(dx, dy)
    np.fill_diagonal(d, np.inf)
    eps = np.sort(d, axis=1)[:, k - 1 : k]
    nx, ny = (dx < eps).sum(1) - 1, (dy < eps).sum(1) - 1
    return digamma(len(x)) + digamma(k) - digamma(nx + 1).mean() - digamma(ny + 1).mean()


# --- correlation ---


def test_correlation_matches_numpy_corrcoef():
    x = mixed_neurons(n=500)
    res = pairwise_correlation(x, neurons=[4, 1, 3])
    np.testing.assert_allclose(res.matrix.numpy(), np.corrcoef(x[:, [4, 1, 3]].T), atol=1e-6)
    assert res.neurons.tolist() == [4, 1, 3] and res.method == "pearson"
    assert res.n_samples == 500 and res.dead == [] and res.shuffle_floor is None


def upper_vals(matrix):
    i, j = torch.triu_indices(3, 3, offset=1)
    return matrix[i, j]


@pytest.mark.parametrize("q", [0.5, 0.8])
def test_dropout_scales_correlation_by_keep_prob(q):
    """IC-CORR: inverted dropout (mask / q, as nn.Dropout) on zero-mean inputs multiplies every
    correlation by q; with a non-zero mean the factor is smaller than q."""
    gen = torch.Generator().manual_seed(0)
    cov = torch.tensor([[1.0, 0.6, -0.4], [0.6, 1.0, 0.3], [-0.4, 0.3, 1.0]], dtype=torch.float64)
    x = torch.randn(200_000, 3, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    mask = torch.bernoulli(torch.full_like(x, q), generator=gen) / q
    before = pairwise_correlation(x).matrix
    after = pairwise_correlation(x * mask).matrix
    assert torch.allclose(upper_vals(after), q * upper_vals(before), atol=0.01)
    shifted = pairwise_correlation((x + 2.0) * mask).matrix  # mean μ = 2: q / (1 + μ²(1 − q))
    assert (upper_vals(shifted).abs() < 0.8 * q * upper_vals(before).abs()).all()


@pytest.mark.parametrize("q", [0.5, 0.8])
def test_dropout_scales_binned_mi_by_keep_prob_squared(q):
    """IC-MI: with no mass at 0 before dropout, I(x̂_i; x̂_j) = q² I(x_i; x_j). The binned
    estimator, which keeps the dropout atom in one bin, reads it (the copula, a lower bound for
    such non-Gaussian copulas, reads less)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.from_numpy(gaussian_pair(0.6, seed=2))
    mask = torch.bernoulli(torch.full_like(x, q), generator=gen) / q
    got = mi01(x * mask, method="binned")
    assert got == pytest.approx(q**2 * gaussian_mi(0.6), abs=0.02)  # q · I would be ≥ 0.035 off


# --- accuracy against the Gaussian closed form and scikit-learn ---


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.6, -0.5])
def test_binned_close_to_gaussian_mi(rho):
    assert abs(mi01(gaussian_pair(rho), method="binned") - gaussian_mi(rho)) <= 0.03


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.6, -0.5, 0.9, -0.9])
def test_copula_close_to_gaussian_mi(rho):
    assert abs(mi01(gaussian_pair(rho)) - gaussian_mi(rho)) <= 0.04


@pytest.mark.parametrize("f", [np.exp, lambda v: v**3, lambda v: 1 / (1 + np.exp(-v))])
@pytest.mark.parametrize("column", [0, 1])
def test_copula_invariant_under_monotone_transforms(f, column):
    x = gaussian_pair(0.6)
    y = x.copy()
    y[:, column] = f(y[:, column])
    assert abs(mi01(x) - mi01(y)) <= 1e-3


@pytest.mark.parametrize(("rho", "k"), [(0.0, 3), (0.3, 3), (0.6, 3), (-0.5, 3), (0.9, 5)])
def test_ksg_agrees_with_sklearn(rho, k):
    x = gaussian_pair(rho, seed=1)
    theirs = mutual_info_regression(x[:, :1], x[:, 1], n_neighbors=k, random_state=0)[0]
    assert abs(mi01(x, method="ksg", k=k) - theirs) <= 0.02


def test_ksg_equals_brute_force_knn():
    x = mixed_neurons(n=600)[:, [0, 2, 4]]  # no ties, so the 1e-10 jitter changes no neighbour
    res = pairwise_mutual_information(x, method="ksg", k=4)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert float(res.matrix[i, j]) == pytest.approx(ksg_brute(x[:, i], x[:, j], 4), abs=1e-9)


@pytest.mark.parametrize("half", [1, 3, 40, None, 10_000])
def test_windowed_knn_is_exact_whatever_the_window(half):
    """Too-narrow first windows must be widened until exact, never return a wrong distance."""
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(3, 300, generator=gen, dtype=torch.float64).sort(dim=1).values
    ys = 3 * torch.randn(3, 300, generator=gen, dtype=torch.float64)
    ys[1] = ys[1].clamp(min=0)  # an atom: many exact ties in y
    d = torch.maximum((xs[:, :, None] - xs[:, None]).abs(), (ys[:, :, None] - ys[:, None]).abs())
    d.diagonal(dim1=1, dim2=2).fill_(math.inf)
    for k in (1, 3, 6):
        assert torch.equal(_kth_maxnorm(xs, ys, k, half), d.kthvalue(k, dim=2).values)


# --- vectorized all-pairs == naive loop over pairs ---


@pytest.mark.parametrize("method", ["binned", "gaussian_copula"])
def test_all_pairs_equal_naive_loop(method):
    x = mixed_neurons(n=1000)
    res = pairwise_mutual_information(x, method=method, n_bins=7)
    for i in range(5):
        assert math.isnan(res.matrix[i, i])
        for j in range(i + 1, 5):
            if method == "binned":
                want = binned_scalar(x[:, i], x[:, j], 7)
            else:
                want = copula_scalar(x[:, i], x[:, j])
            assert float(res.matrix[i, j]) == pytest.approx(want, abs=1e-10)
            assert res.matrix[j, i] == res.matrix[i, j]


# --- degenerate neurons ---


@pytest.mark.parametrize("method", ["pearson", *METHODS])
def test_dead_neuron_is_nan_listed_and_skipped_by_means(method):
    x = mixed_neurons(n=800)[:, :4]
    x[:, 2] = 1.5
    if method == "pearson":
        res = pairwise_correlation(x)
    else:
        res = pairwise_mutual_information(x, method=method, n_shuffles=1)
    assert res.dead == [2] and res.atom_fraction[2] == 1.0
    assert res.matrix[2].isnan().all() and res.matrix[:, 2].isnan().all()
    alive = [float(res.matrix[i, j]) for i, j in [(0, 1), (0, 3), (1, 3)]]
    assert not any(math.isnan(v) for v in alive)
    assert upper(res).numel() == 3 and mean_offdiag(res) == pytest.approx(np.mean(alive))
    sub = pairwise_correlation(x, neurons=[3, 2]) if method == "pearson" else None
    assert sub is None or (sub.dead == [2] and math.isnan(mean_offdiag(sub)))


@pytest.mark.parametrize("method", ["binned", "gaussian_copula"])
def test_atom_at_zero_gives_no_mi_with_independent_neuron(method):
    """A ReLU'd neuron, 0 on 70 % of samples, vs an independent one: within the shuffle floor."""
    z = np.random.default_rng(3).standard_normal((N, 2))
    x = np.c_[np.maximum(z[:, 0] - 0.5244, 0.0), z[:, 1]]
    res = pairwise_mutual_information(x, method=method, n_shuffles=4)
    assert res.atom_fraction[0] == pytest.approx(0.7, abs=0.02) and res.dead == []
    assert abs(float(res.matrix[0, 1]) - float(res.shuffle_floor[0, 1])) < 0.01


def test_both_zeros_tie():
    """-0.0 (dropout of a negative value) and +0.0 are one atom, not two values."""
    x = torch.tensor([[-0.0, 1.0], [0.0, 2.0], [0.0, 3.0], [1.0, 4.0]])
    res = pairwise_mutual_information(x, method="binned", n_bins=2)
    assert res.atom_fraction.tolist() == [0.75, 0.25]


# --- shuffle floor, RNG hygiene ---


def test_shuffle_floor_near_zero_for_copula_small_positive_for_binned():
    x = np.random.default_rng(4).standard_normal((N, 20))
    copula = pairwise_mutual_information(x, n_shuffles=3).shuffle_floor
    binned = pairwise_mutual_information(x, method="binned", n_shuffles=3).shuffle_floor
    i, j = torch.triu_indices(20, 20, offset=1)
    assert abs(float(copula[i, j].mean())) < 1e-3
    assert 0 < float(binned[i, j].mean()) < 0.01  # 2nd-order plug-in bias ≈ (B² − 1)² / (12 N²)


def test_seeded_and_leaves_global_rng_alone():
    x = mixed_neurons(n=500)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    a = pairwise_mutual_information(x, method="ksg", n_shuffles=2, seed=5)
    b = pairwise_mutual_information(x, method="ksg", n_shuffles=2, seed=5)
    c = pairwise_mutual_information(x, method="ksg", n_shuffles=2, seed=6)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()
    assert torch.equal(a.shuffle_floor.nan_to_num(), b.shuffle_floor.nan_to_num())
    assert not torch.equal(a.shuffle_floor.nan_to_num(), c.shuffle_floor.nan_to_num())


# --- selection of neurons and pairs, inputs ---


@pytest.mark.parametrize("method", METHODS)
def test_pairs_pick_entries_and_neurons_map_back(method):
    x = mixed_neurons(n=600)
    full = pairwise_mutual_information(x, method=method)
    res = pairwise_mutual_information(x, method=method, pairs=[(4, 0), (2, 4)])
    assert res.neurons.tolist() == [0, 2, 4] and res.pairs.tolist() == [[0, 2], [1, 2]]
    assert upper(res).numel() == 2 and math.isnan(res.matrix[0, 1])
    assert float(res.matrix[2, 0]) == pytest.approx(float(full.matrix[4, 0]), abs=1e-6)
    assert float(res.matrix[1, 2]) == pytest.approx(float(full.matrix[2, 4]), abs=1e-6)
    sub = pairwise_mutual_information(x, method=method, neurons=[4, 2])
    assert float(sub.matrix[0, 1]) == pytest.approx(float(full.matrix[4, 2]), abs=1e-6)


def test_ksg_asks_for_pairs_when_d_is_large():
    x = np.random.default_rng(0).standard_normal((50, 17))
    with pytest.raises(ValueError, match="pairs"):
        pairwise_mutual_information(x, method="ksg")


def test_float32_torch_and_float64_numpy_inputs_agree():
    x32 = torch.from_numpy(mixed_neurons(n=700)).float()
    for method in ("binned", "gaussian_copula"):
        a = pairwise_mutual_information(x32, method=method).matrix
        b = pairwise_mutual_information(x32.double().numpy(), method=method).matrix
        assert torch.allclose(a, b, atol=1e-12, equal_nan=True)
    assert isinstance(pairwise_correlation(x32), PairwiseResult)


def test_bad_arguments_raise():
    x = np.zeros((10, 3)) + np.arange(10)[:, None] ** [1, 2, 3]
    for kw in (
        {"method": "mine"},
        {"neurons": [0, 0]},
        {"pairs": [(1, 1)]},
        {"n_bins": 1, "method": "binned"},
    ):
        with pytest.raises(ValueError):
            pairwise_mutual_information(x, **kw)
    with pytest.raises(ValueError, match="NaN"):
        pairwise_correlation(np.full((4, 2), np.nan))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = torch.from_numpy(mixed_neurons()).float()
    for method in METHODS:
        cpu = pairwise_mutual_information(x, method=method, n_shuffles=1)
        gpu = pairwise_mutual_information(x.cuda(), method=method, n_shuffles=1)
        assert gpu.matrix.device.type == "cuda"
        tol = 0.02 if method == "ksg" else 1e-9  # the jitter that breaks ksg's ties differs
        assert torch.allclose(gpu.matrix.cpu(), cpu.matrix, atol=tol, equal_nan=True)
        floor = gpu.shuffle_floor.cpu()  # other generator, same estimator: same order of size
        assert (floor - cpu.shuffle_floor).nan_to_num().abs().max() < 0.02
    assert torch.allclose(
        pairwise_correlation(x.cuda()).matrix.cpu(), pairwise_correlation(x).matrix, atol=1e-9
    )


# --- dropout_ratios: IC-CORR and IC-MI on Gaussians with known structure ---


def _correlated(n=1024, d=6, mean=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    mix = torch.randn(2, d, generator=g, dtype=torch.float64)
    return z @ mix + 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64) + mean


@pytest.mark.parametrize("q", [0.9, 0.5, 0.3])
def test_dropout_ratios_are_q_and_q_squared_for_zero_mean_inputs(q):
    from normtheory.measure.information import dropout_ratios

    x = _correlated()
    x = (x - x.mean(0)) / x.std(0)
    r = dropout_ratios(x, q, n_masks=16)
    assert r.corr == pytest.approx(q, abs=0.02)
    assert r.mi == pytest.approx(q**2, abs=0.03)
    assert r.n_samples == 16 * 1024 and r.keep == q


def test_dropout_ratio_preconditions_matter():
    from normtheory.measure.information import dropout_ratios

    shifted = _correlated(mean=2.0)  # non-zero mean: correlation shrinks by less than q
    assert dropout_ratios(shifted, 0.5).corr < 0.45
    relu = torch.relu(_correlated() - 0.3)  # an atom at 0: MI shrinks by more than q²
    assert dropout_ratios(relu, 0.5).mi < 0.22
    assert dropout_ratios(relu, 1.0).mi == pytest.approx(1.0)
    with pytest.raises(ValueError, match="keep must be in"):
        dropout_ratios(relu, 0.0)
    with pytest.raises(ValueError, match="shape"):
        dropout_ratios(relu[:, 0], 0.5)
