"""`normtheory.measure.singularity`: dead channels, off fractions and StatDiff (the distance of a
channel's mean and standard deviation from the unit Gaussian's) on hand-built activations."""

import pytest
import torch

from normtheory.measure.singularity import channel_health


def test_channel_health_hand_built():
    y = torch.zeros(4, 3, 2, 2)
    y[:, 0] = -1.0  # channel 0: always ≤ 0 → dead
    y[0, 1, 0, 0] = 2.0  # channel 1: on for example 0 only
    y[:, 2] = torch.randn(4, 2, 2).abs() + 0.1  # channel 2: always on
    h = channel_health(y)
    assert h.dead.tolist() == [True, False, False]
    assert h.off_fraction.tolist() == [1.0, 0.75, 0.0]
    ch1 = y[:, 1].reshape(-1).double()
    mu, sd = ch1.mean(), ch1.std(correction=0)
    assert h.stat_diff[1].item() == pytest.approx(float((mu**2 + (sd - 1) ** 2).sqrt()))
    assert h.mean_shift[1].item() == pytest.approx(float(mu / sd))
    assert h.stat_diff[0].item() == pytest.approx(2**0.5)  # mean −1, sd 0
    assert h.summary()["dead"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="N >= 2"):
        channel_health(torch.zeros(1, 3))
