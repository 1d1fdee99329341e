"""Pairwise correlation and mutual information (IC-CORR, IC-MI): correlation against numpy, dead
neurons, shuffle floors, RNG hygiene, the selection of neurons and pairs, and the dropout factor
of IC-CORR. The estimators themselves are checked in test_rank.py (copula, binned) and
test_ksg.py."""

import math

import numpy as np
import pytest
import torch
from neuron_data import N, mixed_neurons

from normtheory.measure.information import (
    METHODS,
    PairwiseResult,
    mean_offdiag,
    pairwise_correlation,
    pairwise_mutual_information,
    upper,
)

pytestmark = pytest.mark.usefixtures("one_thread")


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
    x = np.random.default_rng(0).standard_normal((50, 33))
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
