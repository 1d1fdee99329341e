"""Activations for the tests of the pairwise estimators: Gaussian pairs with a closed-form MI and
neurons with atoms and ties."""

import math

import numpy as np

from normtheory.measure.information import pairwise_mutual_information

N = 4096


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
