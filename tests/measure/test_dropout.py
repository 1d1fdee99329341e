"""dropout_ratios and module_dropout_ratios: IC-CORR and IC-MI on Gaussians with known structure
(closed forms: q, q², and q / (1 + (1 − q) m²/σ²) for a mean m)."""

import numpy as np
import pytest
import torch
from torch import nn

from normtheory.measure import _rank
from normtheory.measure.dropout import dropout_ratios, module_dropout_ratios
from normtheory.measure.information import pairwise_correlation, upper

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


@pytest.mark.parametrize("q", [0.9, 0.5, 0.3])
def test_module_dropout_ratios_are_q_and_q_squared_for_zero_mean_gaussians(q):
    """Masks drawn by an nn.Dropout module: zero-mean Gaussian units give ratio ≈ q (correlation)
    and ≈ q² (MI), as the hand-drawn masks of `dropout_ratios` do."""
    x = _correlated()
    x = (x - x.mean(0)) / x.std(0)
    drop = nn.Dropout(p=1.0 - q).eval()
    r = module_dropout_ratios(x, drop, n_masks=16, seed=3)
    assert r.keep == q and r.n_samples == 16 * 1024 and r.n_constant == 0
    assert r.corr == pytest.approx(q, abs=0.02)
    assert r.mi == pytest.approx(q**2, abs=0.03)
    assert not drop.training  # the module's mode is restored


def test_module_dropout_ratios_fall_below_q_with_a_mean():
    """A non-zero mean (BN's β, here 1.5 σ): the correlation factor is q / (1 + (1 − q) m²/σ²)
    in closed form, below q; MI (no mass at 0) still scales by q²."""
    q, m = 0.5, 1.5
    x = _correlated()
    x = (x - x.mean(0)) / x.std(0) + m
    r = module_dropout_ratios(x, nn.Dropout(p=1.0 - q), n_masks=16)
    assert r.corr == pytest.approx(q / (1 + (1 - q) * m**2), abs=0.02)
    assert r.corr < q - 0.15
    assert r.mi == pytest.approx(q**2, abs=0.03)


def test_module_dropout_ratios_masks_come_from_the_module_under_the_seed():
    """The masks are the module's (a module with p = 0 changes nothing: ratios exactly 1), the
    same seed gives the same masks, and neither the global RNG stream nor the mode moves."""
    x = _correlated(n=256)
    before = torch.get_rng_state()
    one = module_dropout_ratios(x, nn.Dropout(p=0.0), n_masks=2)
    assert (one.corr, one.mi) == pytest.approx((1.0, 1.0), abs=1e-12)
    a = module_dropout_ratios(x, nn.Dropout(p=0.5), n_masks=4, seed=7)
    b = module_dropout_ratios(x, nn.Dropout(p=0.5), n_masks=4, seed=7)
    c = module_dropout_ratios(x, nn.Dropout(p=0.5), n_masks=4, seed=8)
    assert a == b and a != c
    assert torch.equal(torch.get_rng_state(), before)
    # the same masks as nn.Dropout draws from the seeded CPU generator
    torch.manual_seed(7)
    after = nn.Dropout(p=0.5)(x.repeat(4, 1))
    torch.set_rng_state(before)
    corr = pairwise_correlation(after)
    c0 = upper(pairwise_correlation(x))
    assert a.corr == pytest.approx(float((c0 * upper(corr)).sum() / c0.square().sum()), rel=1e-12)


def test_module_dropout_ratios_leave_constant_units_out():
    """A dead ReLU after BN is the constant β: it is left out (and counted), not an error."""
    x = _correlated()
    x = torch.cat([x, torch.full((x.shape[0], 1), 0.7, dtype=x.dtype)], 1)
    r = module_dropout_ratios(x, nn.Dropout(p=0.5), n_masks=4)
    full = module_dropout_ratios(x[:, :-1], nn.Dropout(p=0.5), n_masks=4)
    assert r.n_constant == 1 and full.n_constant == 0
    with pytest.raises(TypeError, match="nn.Dropout"):
        module_dropout_ratios(x, nn.ReLU())
    with pytest.raises(ValueError, match="drops everything"):
        module_dropout_ratios(x, nn.Dropout(p=1.0))


def test_module_dropout_mi_keeps_the_before_bins_with_a_moved_relu_atom():
    """Regression: the IC layer's units carry the ReLU atom, which BN moves from 0 to β − γμ/σ.
    Re-binning the after-dropout values by rank (as `dropout_ratios` does) keeps one atom bin
    (the dropout zeros) and spreads the moved ReLU atom over the equal-mass bins, so the
    continuous part gets fewer bins after dropout than before and the MI ratio reads ~25 %
    below q². With the bins fixed from the examples before dropout it is q² (the identity holds
    for any fixed discretization when no value is 0); with the atom at 0 (ReLU, no BN) it is
    below q², as IC-MI's precondition says."""
    q = 0.5
    relu = torch.relu(_correlated())  # an atom at 0 on about half of each unit
    moved = (relu - relu.mean(0)) / relu.std(0) + 0.3  # BN with β = 0.3: the atom is off 0
    drop = nn.Dropout(p=1.0 - q)
    assert module_dropout_ratios(moved, drop).mi == pytest.approx(q**2, abs=0.01)
    assert dropout_ratios(moved, q).mi < 0.85 * q**2  # the re-binned estimate this replaces
    assert module_dropout_ratios(relu, drop).mi < 0.8 * q**2


def test_codes_mi_is_the_miller_madow_plugin_mi():
    """`codes_mi` against a loop over pairs with numpy histograms (independent oracle)."""
    g = np.random.default_rng(0)
    n, k = 500, 5
    base = g.integers(0, k, n)
    codes = np.stack([base, (base + g.integers(0, 2, n)) % k, g.integers(0, k, n)])
    got = _rank.codes_mi(torch.as_tensor(codes), k).numpy()

    def h(counts):
        p = counts[counts > 0] / n
        return -(p * np.log(p)).sum() + ((counts > 0).sum() - 1) / (2 * n)

    for a in range(3):
        for b in range(3):
            joint = np.histogram2d(codes[a], codes[b], bins=[np.arange(k + 1)] * 2)[0]
            want = h(joint.sum(1)) + h(joint.sum(0)) - h(joint.ravel())
            assert got[a, b] == pytest.approx(want, abs=1e-12)
