"""dropout_ratios: IC-CORR and IC-MI on Gaussians with known structure."""

import pytest
import torch

from normtheory.measure.dropout import dropout_ratios

pytestmark = pytest.mark.usefixtures("one_thread")


def _correlated(n=1024, d=6, mean=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    mix = torch.randn(2, d, generator=g, dtype=torch.float64)
    return z @ mix + 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64) + mean


@pytest.mark.parametrize("q", [0.9, 0.5, 0.3])
def test_dropout_ratios_are_q_and_q_squared_for_zero_mean_inputs(q):
    x = _correlated()
    x = (x - x.mean(0)) / x.std(0)
    r = dropout_ratios(x, q, n_masks=16)
    assert r.corr == pytest.approx(q, abs=0.02)
    assert r.mi == pytest.approx(q**2, abs=0.03)
    assert r.n_samples == 16 * 1024 and r.keep == q


def test_dropout_ratio_preconditions_matter():
    shifted = _correlated(mean=2.0)  # non-zero mean: correlation shrinks by less than q
    assert dropout_ratios(shifted, 0.5).corr < 0.45
    relu = torch.relu(_correlated() - 0.3)  # an atom at 0: MI shrinks by more than q²
    assert dropout_ratios(relu, 0.5).mi < 0.22
    assert dropout_ratios(relu, 1.0).mi == pytest.approx(1.0)
    with pytest.raises(ValueError, match="keep must be in"):
        dropout_ratios(relu, 0.0)
    with pytest.raises(ValueError, match="shape"):
        dropout_ratios(relu[:, 0], 0.5)
