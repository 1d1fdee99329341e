"""The loop reads the loss only at sync steps (`TrainConfig.sync_every`, hook and eval steps,
the last step), snapshots before each unchecked stretch and replays it when a non-finite loss
shows up inside. Checked here against an oracle: a plain loop written below as the loop was
before (``loss.item()`` and a finiteness check every step, stop before the backward pass), on
completing and diverging runs, with dropout (global RNG) and augmentation (its own generator),
and against ``sync_every=1``; plus the steps/s the result carries."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normtheory.augment import crop_flip, draw_crop_flip
from normtheory.data import load_dataset
from normtheory.hooks import LossAccuracy
from normtheory.hooks.base import Hook
from normtheory.train import TrainConfig, train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _model(dropout=0.0):
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Dropout(dropout), nn.Linear(32, 10)
    )


def _square(out, y):  # grows without bound at a large lr: a run that diverges in a few steps
    return (out**2).mean()


def _reference(model, train_set, config, loss_fn, augment_seed=None, flip=True):
    """The old loop: read the loss every step, stop at the first non-finite one."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    aug = torch.Generator().manual_seed(augment_seed) if augment_seed is not None else None
    x_all, y_all = train_set.tensors[:2]
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    model.train()
    perm, pos, n, b = None, 0, len(x_all), config.batch_size
    for step in range(config.steps):
        if perm is None or pos + b > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx, pos = perm[pos : pos + b], pos + b
        x = x_all[idx]
        if aug is not None:  # digits: 8×8, padded by 1
            offsets, flips = draw_crop_flip(b, aug, 1)
            x = crop_flip(x, offsets, flips & flip, 1)
        loss = loss_fn(model(x), y_all[idx])
        if not math.isfinite(loss.item()):
            return step
        opt.zero_grad()
        loss.backward()
        opt.step()
    return None


def _same_state(a, b):
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        torch.testing.assert_close(va, vb, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("lr,loss_fn", [(0.05, F.cross_entropy), (10.0, _square)])
@pytest.mark.parametrize("sync_every", [1, 4, 1000])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_matches_the_old_loop_whatever_the_sync_steps(digits, lr, loss_fn, sync_every, dropout):
    config = TrainConfig(lr=lr, momentum=0.9, steps=40, device="cpu", sync_every=sync_every)
    ref = _model(dropout)
    diverged_at = _reference(ref, digits[0], config, loss_fn)
    assert (diverged_at is None) == (lr < 1)  # the oracle saw the run it is meant to test
    got = _model(dropout)
    result = train(got, digits[0], None, config, loss_fn=loss_fn)
    assert result.diverged_at == diverged_at
    assert result.status == ("completed" if diverged_at is None else "diverged")
    assert result.steps_done == (40 if diverged_at is None else diverged_at)
    _same_state(got, ref)  # never updated from the non-finite loss; BN stats of its forward


def test_replay_restores_the_augmentation_stream(digits):
    from normtheory.train import _AUGMENT_SEED

    config = TrainConfig(lr=10.0, momentum=0.9, steps=40, device="cpu", sync_every=1000)
    ref = _model()
    diverged_at = _reference(ref, digits[0], config, _square, augment_seed=_AUGMENT_SEED)
    got = _model()
    result = train(got, digits[0], None, TrainConfig(**{**config.__dict__, "augment": "crop_flip"}),
                   loss_fn=_square)  # fmt: skip
    assert diverged_at is not None and result.diverged_at == diverged_at
    _same_state(got, ref)


def test_crop_is_crop_flip_without_the_flips(digits):
    from normtheory.train import _AUGMENT_SEED

    config = TrainConfig(lr=0.05, momentum=0.9, steps=20, device="cpu", augment="crop")
    ref = _model()
    _reference(ref, digits[0], config, F.cross_entropy, augment_seed=_AUGMENT_SEED, flip=False)
    got = _model()
    train(got, digits[0], None, config)
    _same_state(got, ref)


class _Steps(Hook):
    """Records each step it is called at, and the loss it sees there."""

    events = ("after_backward", "after_step")
    default_name = "steps"

    def on(self, event, ctx):
        yield event, "loss", ctx.loss.item()


@pytest.mark.parametrize("sync_every", [1, 5, 1000])
def test_hooks_records_are_the_same_and_never_see_the_diverging_step(digits, sync_every):
    frames = []
    for s in (1, sync_every):
        config = TrainConfig(lr=10.0, momentum=0.9, steps=40, device="cpu", sync_every=s)
        result = train(_model(0.3), *digits, config, [_Steps(every=3), LossAccuracy(every=2)],
                       loss_fn=_square)  # fmt: skip
        assert result.status == "diverged"
        assert result.records["step"].max() < result.diverged_at
        assert result.records["value"].map(math.isfinite).all()
        frames.append((result.records, result.diverged_at, result.final))
    (ra, da, fa), (rb, db, fb) = frames
    assert da == db and str(fa) == str(fb)
    assert ra.equals(rb)


def test_the_result_carries_steps_per_second_and_the_loops_cpu_time(digits):
    result = train(_model(), *digits, TrainConfig(steps=10, device="cpu"))
    assert math.isfinite(result.steps_per_s) and result.steps_per_s > 0
    # the step loop's CPU time: positive, and no more than the whole call's wall time allows
    # on the threads torch may use (a clock read outside the loop would exceed it)
    assert 0 < result.loop_cpu_s <= result.wall_time * max(1, torch.get_num_threads()) + 0.05


def test_sync_every_is_checked():
    with pytest.raises(ValueError, match="sync_every must be >= 0"):
        TrainConfig(sync_every=-1)
