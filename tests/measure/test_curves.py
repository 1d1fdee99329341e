"""`normtheory.measure.curves.loss_jitter` against closed forms: a smooth exponential decay has no
jitter, one spike of height h among n changes gives h √(2 / (n − 1)), the level does not matter,
only the window counts, and a random walk of log loss has jitter ≈ its step sd."""

import numpy as np
import pytest

from normtheory.measure.curves import loss_jitter, steps_to_target

STEPS = np.arange(0, 301, 5)  # 61 records; the last half is steps 150…300, 31 records


def test_smooth_decay_has_no_jitter():
    assert loss_jitter(STEPS, 2.0 * np.exp(-STEPS / 60)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("height", [0.1, 0.7])
def test_one_spike_in_the_last_half(height):
    """Spike at one record: the changes get +h and −h around a constant −kΔ, so the centred
    changes are (h, −h, 0, …) over n = 30 changes: J² = 2h² / (n − 1)."""
    loss = 2.0 * np.exp(-STEPS / 60)
    loss[STEPS == 200] *= np.exp(height)
    assert loss_jitter(STEPS, loss) == pytest.approx(height * np.sqrt(2 / 29), rel=1e-9)
    assert loss_jitter(STEPS, 10 * loss) == pytest.approx(loss_jitter(STEPS, loss), rel=1e-9)


def test_a_spike_in_the_first_half_does_not_count():
    loss = 2.0 * np.exp(-STEPS / 60)
    loss[STEPS == 100] *= np.e
    assert loss_jitter(STEPS, loss) == pytest.approx(0.0, abs=1e-12)
    assert loss_jitter(STEPS, loss, start=0.0) > 0.1


def test_random_walk_jitter_is_its_step_sd():
    rng = np.random.default_rng(0)
    steps = np.arange(20001)
    loss = np.exp(np.cumsum(rng.normal(-1e-4, 0.03, len(steps))))
    assert loss_jitter(steps, loss) == pytest.approx(0.03, rel=0.03)


def test_too_few_records_or_a_diverged_run_give_nan():
    assert np.isnan(loss_jitter([0, 5, 10], [1.0, 0.5, 0.4]))  # the last half holds 2 records
    loss = np.exp(-STEPS / 60)
    loss[-3] = np.nan
    assert np.isnan(loss_jitter(STEPS, loss))
    with pytest.raises(ValueError, match="increasing"):
        loss_jitter([0, 10, 5], [1.0, 0.5, 0.4])


def _steps_to_target_loop(steps, losses, target, window):
    """Oracle: walk the records in step order, averaging the last `window` by hand."""
    pairs = sorted(zip(steps, losses))
    for k, (step, _) in enumerate(pairs):
        last = [loss for _, loss in pairs[max(0, k - window + 1) : k + 1]]
        if sum(last) / len(last) < target:
            return float(step)
    return float("nan")


def test_steps_to_target_is_the_first_step_of_the_smoothed_curve_below_target():
    rng = np.random.default_rng(0)
    steps = np.arange(0, 200, 5)
    losses = 2.0 * np.exp(-steps / 50) * np.exp(rng.normal(0, 0.3, len(steps)))
    shuffled = rng.permutation(len(steps))  # the records may come in any order
    for target, window in ((0.5, 5), (0.3, 3), (1.5, 1)):
        want = _steps_to_target_loop(steps, losses, target, window)
        got = steps_to_target(steps[shuffled], losses[shuffled], target, window=window)
        assert got == want, (target, window)
    # one record below the target among higher ones does not count once smoothed
    assert steps_to_target([0, 1, 2, 3], [1.0, 1.0, 0.1, 1.0], 0.5, window=5) != 2.0
    assert steps_to_target([0, 1, 2, 3], [1.0, 1.0, 0.1, 1.0], 0.5, window=1) == 2.0
    assert np.isnan(steps_to_target(steps, losses, 1e-6))
    # at the start the window holds the records there are: a low first record counts at once
    first_low = [0.1, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert steps_to_target(range(6), first_low, 0.5) == 0.0
    assert _steps_to_target_loop(range(6), first_low, 0.5, 5) == 0.0
