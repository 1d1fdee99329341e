"""`normtheory.hooks.base` and every hook together: training with all hooks is bit-identical to
training without them (the test can fail: a careless hook changes the run), `Monitor` schedules
hooks as declared and refuses duplicate names, bad schedules and unknown events.

What each hook records is checked in its own module's tests (``test_basic.py``,
``test_curvature_hooks.py``, ...); `normtheory.state.preserved` in ``tests/test_state.py``."""

import pytest
import torch

from normtheory.data import load_dataset
from normtheory.hooks import (
    Context,
    GradNorm,
    HessianDensity,
    HessianSpectrum,
    HessianTrace,
    Hook,
    LossAccuracy,
    Monitor,
    NeuronInformation,
    OneStepLoss,
    OrthogonalWeightNorm,
    ScaleInvariance,
    Singularities,
    Smoothness,
    WeightNorm,
)
from normtheory.models import build_model
from normtheory.state import preserved
from normtheory.train import TrainConfig, train


def _setup(norm="batch", placement="norm_act", keep=1.0):
    train_set, test_set = load_dataset("digits", max_train=256, max_test=128)
    torch.manual_seed(0)
    model = build_model(
        "convnet",
        norm=norm,
        in_shape=train_set.in_shape,
        num_classes=10,
        width=8,
        depth=3,
        placement=placement,
        dropout_keep=keep,
    )
    return model, train_set, test_set


class _Meddler(Hook):
    """A hook that does everything a careless measurement could: forward in train mode (BN stats
    move, dropout draws masks), backward (.grad accumulates), mode flips, RNG draws."""

    events = ("after_backward", "after_step", "eval")

    def on(self, event, ctx):
        with preserved(ctx.model):
            ctx.model.train()
            out = ctx.model(ctx.inputs if ctx.inputs is not None else torch.randn(4, 1, 8, 8))
            out.sum().backward()
            torch.rand(3)
            ctx.model.eval()
        return [("x", "", 1.0)]


@pytest.mark.parametrize(
    "norm,placement,keep,momentum,rescale",
    [
        ("batch", "norm_act", 1.0, 0.9, False),
        ("batch", "ic", 0.7, 0.9, True),
        ("ghost_batch", "norm_act", 0.8, 0.0, False),
    ],
)
def test_training_with_all_hooks_is_bit_identical(norm, placement, keep, momentum, rescale):
    torch.use_deterministic_algorithms(True)
    try:
        config = TrainConfig(
            lr=0.05,
            momentum=momentum,
            weight_decay=1e-3,
            batch_size=16,
            steps=12,
            eval_every=4,
            seed=3,
            device="cpu",
            rescale=rescale,
            gamma_decay=1e-3,
            beta_decay=1e-3,
        )
        runs = []
        _, train_probe, _ = _setup(norm, placement, keep)
        every_hook = [
            LossAccuracy(),
            WeightNorm(every=2),
            GradNorm(every=3),
            _Meddler(name="meddler"),
            HessianSpectrum(k=2, tol=1e-2, every=6),
            HessianTrace(n_hvp=8, every=6, mode="eval"),
            HessianDensity(n_iter=5, at_end=True),
            Smoothness(every=4, n_points=3),
            HessianSpectrum(k=1, tol=1e-2, every=6, invariant=True, name="hessian_si"),
            Smoothness(every=4, n_points=3, invariant=True, name="smoothness_si"),
            OneStepLoss(lr=0.1, every=5, probe=(train_probe.inputs[:32], train_probe.targets[:32])),
            OrthogonalWeightNorm(every=3),
            ScaleInvariance(every=2),
            NeuronInformation(probe=train_probe.inputs[:64], every=5, n_shuffles=1),
            Singularities(probe=train_probe.inputs[:64], every=4),
        ]
        for hooks in ([], every_hook):
            model, train_set, test_set = _setup(norm, placement, keep)
            result = train(model, train_set, test_set, config, hooks)
            runs.append((model, result))
        (m0, r0), (m1, r1) = runs
        for (n, a), (_, b) in zip(m0.state_dict().items(), m1.state_dict().items()):
            assert torch.equal(a, b), n
        assert r0.final == r1.final
        assert len(r1.records) > 0 and len(r0.records) == 0
    finally:
        torch.use_deterministic_algorithms(False)


def test_meddler_without_preservation_would_change_training():
    """The bit-identity test can fail: the same meddling without `preserved` changes the run."""

    class Careless(_Meddler):
        def on(self, event, ctx):
            ctx.model(ctx.inputs).sum().backward()
            return []

    config = TrainConfig(lr=0.05, batch_size=16, steps=5, seed=0, device="cpu")
    finals = []
    for hooks in ([], [Careless()]):
        model, train_set, test_set = _setup()
        train(model, train_set, test_set, config, hooks)
        finals.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert not torch.equal(*finals)


def test_schedule_every_and_callable():
    model, *_ = _setup()
    hooks = [WeightNorm(name="w3", every=3), WeightNorm(name="odd", every=lambda s: s % 2 == 1)]
    monitor = Monitor(model, hooks)
    for step in range(7):
        monitor.after_step(step)
    frame = monitor.frame()
    assert sorted(frame[frame.metric == "w3.l2"].step.unique()) == [0, 3, 6]
    assert sorted(frame[frame.metric == "odd.l2"].step.unique()) == [1, 3, 5]


def test_duplicate_hook_names_and_bad_schedule_rejected():
    model, *_ = _setup()
    with pytest.raises(ValueError, match="weight_norm"):
        Monitor(model, [WeightNorm(), WeightNorm()])
    with pytest.raises(ValueError, match="every"):
        WeightNorm(every=0)
    with pytest.raises(ValueError, match="unknown parameters"):
        Monitor(model, [WeightNorm(params=["nope"])]).after_step(0)
    with pytest.raises(ValueError, match="unknown event"):
        Monitor(model, []).fire("before_lunch", Context(model=model))
