"""IC-SIGN: the same-sign fraction of a layer's input vectors (im2col patches for a conv) against
an explicit loop."""

import numpy as np
import pytest
import torch
from torch import nn

from normtheory.measure.gradient_sign import same_sign_fraction

pytestmark = pytest.mark.usefixtures("one_thread")


def _naive_same_sign(layer, x):
    """Per (sample, position) input patch from an explicit loop; float64."""
    x = x.double()
    fractions = []
    if isinstance(layer, nn.Linear):
        rows = list(x)
    else:
        k, p = layer.kernel_size[0], layer.padding[0]
        xp = torch.nn.functional.pad(x, (p, p, p, p))
        rows = [
            xp[n, :, i : i + k, j : j + k].reshape(-1)
            for n in range(x.shape[0])
            for i in range(xp.shape[2] - k + 1)
            for j in range(xp.shape[3] - k + 1)
        ]
    for r in rows:
        pos, neg = int((r > 0).sum()), int((r < 0).sum())
        if pos + neg:
            fractions.append(max(pos, neg) / (pos + neg))
    return float(np.mean(fractions))


def test_same_sign_fraction_matches_a_naive_loop():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 5, 5, generator=gen)
    x[x.abs() < 0.3] = 0.0  # some exact zeros are left out
    conv = nn.Conv2d(2, 3, 3, padding=1)
    assert same_sign_fraction(conv, x) == pytest.approx(_naive_same_sign(conv, x), abs=1e-12)
    lin, v = nn.Linear(7, 2), torch.randn(40, 7, generator=gen)
    assert same_sign_fraction(lin, v) == pytest.approx(_naive_same_sign(lin, v), abs=1e-12)
    assert same_sign_fraction(lin, v.relu()) == 1.0
    assert same_sign_fraction(lin, -v.relu()) == 1.0
    assert np.isnan(same_sign_fraction(lin, torch.zeros(3, 7)))
