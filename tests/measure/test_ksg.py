"""KSG mutual information: against scikit-learn's estimator and brute-force k-NN, and the windowed
k-NN search exact whatever the first window."""

import math

import numpy as np
import pytest
import torch
from neuron_data import gaussian_pair, mi01, mixed_neurons
from scipy.special import digamma
from sklearn.feature_selection import mutual_info_regression

from normtheory.measure import _ksg
from normtheory.measure._ksg import kth_maxnorm
from normtheory.measure.information import pairwise_mutual_information

pytestmark = pytest.mark.usefixtures("one_thread")


def ksg_brute(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """KSG algorithm 1 by O(N^2) distances on std-scaled data (no jitter needed without ties)."""
    x, y = x / x.std(), y / y.std()
    dx, dy = np.abs(x[:, None] - x[None]), np.abs(y[:, None] - y[None])
    d = np.maximum(dx, dy)
    np.fill_diagonal(d, np.inf)
    eps = np.sort(d, axis=1)[:, k - 1 : k]
    nx, ny = (dx < eps).sum(1) - 1, (dy < eps).sum(1) - 1
    return digamma(len(x)) + digamma(k) - digamma(nx + 1).mean() - digamma(ny + 1).mean()


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
        assert torch.equal(kth_maxnorm(xs, ys, k, half), d.kthvalue(k, dim=2).values)


def _brute_kth(xs: torch.Tensor, ys: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.maximum((xs[:, :, None] - xs[:, None]).abs(), (ys[:, :, None] - ys[:, None]).abs())
    d.diagonal(dim1=1, dim2=2).fill_(math.inf)
    return d.kthvalue(k, dim=2).values


def _atoms_data(n: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows: a Gaussian pair, an atom in x, an atom in y, a joint atom (both ReLU'd); ties
    jittered at 1e-10 as `ksg_mi` does, x sorted."""
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 4, n, generator=gen, dtype=torch.float64)
    y = 0.6 * x + y
    x[[1, 3]], y[[2, 3]] = x[[1, 3]].clamp(min=0), y[[2, 3]].clamp(min=0)
    x = x + 1e-10 * torch.randn(4, n, generator=gen, dtype=torch.float64)
    y = y + 1e-10 * torch.randn(4, n, generator=gen, dtype=torch.float64)
    xs, order = x.sort(dim=1)
    return xs, y.gather(1, order)


@pytest.mark.parametrize(("b", "c", "reach"), [(64, 5, 2), (16, 1, 1), (7, 2, 3), (1000, 3, 1)])
def test_block_pass_is_exact_where_it_says(b, c, reach):
    """The first pass of `kth_maxnorm` flags a distance exact only when it is the brute-force
    one (never a wrong distance passed on), with blocks that do not divide N, and it settles
    most samples of a Gaussian pair."""
    xs, ys = _atoms_data()
    for k in (1, 3):
        truth = _brute_kth(xs, ys, k)
        d_k, ok = _ksg._block_kth(xs, ys, k, b, c, reach)
        assert torch.equal(d_k[ok], truth[ok])
        assert (d_k >= truth).all()  # the k-th of a subset is never below the true one
        if (b, c, reach) == (64, 5, 2):
            assert ok[0].float().mean() > 0.7


def test_knn_with_atoms_equals_brute_force():
    """The default search (block pass, then windows from 2k + 2 wide) on atoms in x, in y and
    in both, where the block pass fails for most samples."""
    xs, ys = _atoms_data()
    for k in (1, 3, 6):
        assert torch.equal(kth_maxnorm(xs, ys, k), _brute_kth(xs, ys, k))


@pytest.mark.parametrize("length", [1, 5, 64, 100])
def test_count_below_equals_searchsorted(length):
    """The block pass's binary search by gathers against torch.searchsorted (side left), with
    ties, queries beyond both ends and +inf padding after the sorted entries."""
    gen = torch.Generator().manual_seed(length)
    rows = torch.randint(-5, 5, (3, 7, length), generator=gen).double().sort(dim=-1).values
    inf = torch.full((3, 7, 4), math.inf, dtype=torch.float64)
    padded = torch.cat([-inf[..., :2], rows, inf], dim=-1)  # sorted part starts at 2
    q = torch.randint(-7, 7, (3, 7, 9), generator=gen).double()
    expected = torch.searchsorted(rows, q)
    assert torch.equal(_ksg._count_below(padded, q, 2, length), expected)
