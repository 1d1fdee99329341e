"""Named schedules: every(n), evenly(n_points), at_end(), against hand-listed step sets, and
through the training loop (the same rows as the old ``every=n``, ``at_end=True``)."""

import pandas as pd
import pytest
import torch

from normtheory.data import load_dataset
from normtheory.hooks import (
    HessianSpectrum,
    LossAccuracy,
    Monitor,
    Schedule,
    WeightNorm,
    at_end,
    evenly,
    every,
)
from normtheory.hooks.schedule import as_schedule, evenly_steps
from normtheory.models import build_model
from normtheory.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


def _due(schedule: Schedule, total: int) -> list[int]:
    return [s for s in range(total) if schedule.due(s, total)]


@pytest.mark.parametrize(
    ("n", "total", "expected"),
    [
        (1, 4, [0, 1, 2, 3]),
        (5, 12, [0, 5, 10]),
        (5, 11, [0, 5, 10]),
        (3, 10, [0, 3, 6, 9]),
        (7, 5, [0]),
    ],
)
def test_every_is_steps_0_n_2n(n, total, expected):
    assert _due(every(n), total) == expected
    assert _due(every(n), total) == [s for s in range(total) if s % n == 0]  # the old every=n


@pytest.mark.parametrize(
    ("n_points", "total", "expected"),
    [
        (5, 100, [0, 25, 50, 74, 99]),  # i·99/4 = 0, 24.75, 49.5, 74.25, 99
        (3, 10, [0, 5, 9]),  # 4.5 rounds up
        (4, 10, [0, 3, 6, 9]),
        (2, 7, [0, 6]),
        (1, 10, [9]),  # one point: the last step
        (4, 4, [0, 1, 2, 3]),
        (6, 4, [0, 1, 2, 3]),  # more points than steps: every step
        (1, 1, [0]),
        (20, 400, list(range(0, 400, 21))),  # 399/19 = 21 exactly
    ],
)
def test_evenly_spreads_points_over_the_run_including_the_last(n_points, total, expected):
    assert _due(evenly(n_points), total) == expected
    assert sorted(evenly_steps(n_points, total)) == expected
    assert expected[-1] == total - 1


def test_evenly_needs_the_total_number_of_steps():
    with pytest.raises(ValueError, match=r"evenly\(4\) needs the run's total number of steps"):
        evenly(4).due(0)


def test_at_end_has_no_step_and_asks_for_the_end_event():
    assert _due(at_end(), 50) == []
    assert at_end().at_end and not every(1).at_end and not evenly(3).at_end
    assert "end" in LossAccuracy(every=at_end()).events
    assert "end" not in LossAccuracy(every=every(2)).events


def test_reprs_read_like_the_call():
    assert [repr(every(5)), repr(evenly(12)), repr(at_end())] == [
        "every(5)",
        "evenly(12)",
        "at_end()",
    ]
    assert repr(WeightNorm(every=every(3))) == "WeightNorm(name='weight_norm', every=every(3))"


@pytest.mark.parametrize("bad", [0, -2, True, 2.5, "5", None])
def test_bad_every_values_name_the_accepted_forms(bad):
    with pytest.raises(ValueError, match="every must be an integer >= 1, a schedule"):
        as_schedule(bad)
    with pytest.raises(ValueError, match="every must be"):
        WeightNorm(every=bad)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: every(0), r"every\(n\): n must be an integer >= 1, got 0"),
        (lambda: evenly(True), r"evenly\(n_points\): n_points must be an integer >= 1, got True"),
    ],
)
def test_bad_schedule_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_int_and_callable_still_work():
    assert _due(as_schedule(4), 9) == [0, 4, 8]
    assert _due(as_schedule(lambda s: s in (2, 3)), 9) == [2, 3]


def test_monitor_passes_total_steps_to_evenly():
    model = torch.nn.Linear(3, 2)
    monitor = Monitor(model, [WeightNorm(every=evenly(3))], total_steps=9)
    for step in range(9):
        monitor.after_step(step)
    frame = monitor.frame()
    assert sorted(frame.step.unique()) == [0, 4, 8]
    with pytest.raises(ValueError, match="pass total_steps= to Monitor"):
        Monitor(model, [WeightNorm(every=evenly(3))]).after_step(0)


# -- through the training loop ------------------------------------------------------------------


def _run(hooks, steps):
    train_set, _ = load_dataset("digits", max_train=128, max_test=32)
    torch.manual_seed(0)
    model = build_model(
        "convnet", norm="batch", in_shape=train_set.in_shape, num_classes=10, width=4, depth=2
    )
    config = TrainConfig(lr=0.05, batch_size=16, steps=steps, seed=0, device="cpu")
    return train(model, train_set, None, config, hooks).records


def test_every_schedule_records_the_same_rows_as_every_int():
    old = _run([LossAccuracy(every=5)], steps=23)
    new = _run([LossAccuracy(every=every(5))], steps=23)
    assert sorted(old.step.unique()) == [0, 5, 10, 15, 20]
    pd.testing.assert_frame_equal(old, new)


def test_evenly_in_training_reaches_the_last_step():
    records = _run([LossAccuracy(every=evenly(4))], steps=10)
    assert sorted(records.step.unique()) == [0, 3, 6, 9]


def test_at_end_schedule_records_what_at_end_true_records():
    old = _run([HessianSpectrum(k=1, tol=1e-2, at_end=True)], steps=6)
    new = _run([HessianSpectrum(k=1, tol=1e-2, every=at_end())], steps=6)
    assert list(old.step.unique()) == [6]  # the end event only: steps done
    pd.testing.assert_frame_equal(old, new)
    only_end = _run([LossAccuracy(every=at_end())], steps=6)
    assert list(only_end.step.unique()) == [6]
