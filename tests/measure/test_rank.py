"""The rank-based estimators (Gaussian copula, binned with Miller–Madow): the closed form for
Gaussians, a naive loop over pairs written from the formulas, monotone invariance, atoms and
ties, and the dropout factor of IC-MI."""

import math

import numpy as np
import pytest
import torch
from neuron_data import N, gaussian_mi, gaussian_pair, mi01, mixed_neurons
from scipy.special import ndtri
from scipy.stats import rankdata

from normtheory.measure.information import pairwise_mutual_information

pytestmark = pytest.mark.usefixtures("one_thread")


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
