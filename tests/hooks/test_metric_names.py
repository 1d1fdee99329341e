"""Each hook's metric-name constants: well formed, and exactly the metrics a run records."""

import pytest
import torch

import normtheory.hooks as hooks_pkg
from normtheory.data import load_dataset
from normtheory.hooks import (
    BatchDependence,
    DropoutDependence,
    ExampleWeighing,
    GradientSign,
    GradNorm,
    HessianDensity,
    HessianSpectrum,
    HessianTrace,
    Hook,
    LayerHessianBNP,
    LossAccuracy,
    NeuronInformation,
    OneStepLoss,
    OrthogonalWeightNorm,
    ScaleInvariance,
    Singularities,
    Smoothness,
    WeightNorm,
    rename,
)
from normtheory.models import build_model
from normtheory.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")

HOOKS = [
    cls
    for cls in (getattr(hooks_pkg, n) for n in hooks_pkg.__all__)
    if isinstance(cls, type) and issubclass(cls, Hook) and cls is not Hook
]


def _all_hooks(train_set, test_set, probe) -> list[Hook]:
    """One instance of every exported hook, set to record every metric in a 6-step run."""
    return [
        LossAccuracy(data=test_set, every=3),
        WeightNorm(every=3),
        GradNorm(every=3),
        HessianSpectrum(k=1, tol=1e-2, probe=probe, at_end=True),
        HessianTrace(n_hvp=8, probe=probe, at_end=True),
        HessianDensity(n_iter=4, probe=probe, at_end=True),
        Smoothness(n_points=2, probe=probe, at_end=True),
        OneStepLoss(lr=0.05, probe=probe),
        OrthogonalWeightNorm(every=3),
        ScaleInvariance(every=3),
        NeuronInformation(probe=probe, every=3, n_shuffles=1, max_units=8),
        GradientSign(probe=probe, every=3),
        Singularities(probe=probe, every=3),
        ExampleWeighing(
            train_set=train_set, test_set=test_set, batch_size=16, multiples=(0.0, 1.0), n_batches=2
        ),  # fmt: skip
        DropoutDependence(probe=probe, dropout="drop1", n_masks=2),
        BatchDependence(probe=probe[0][:8], other=probe[0][8:16]),
        LayerHessianBNP(probe=probe),
    ]


def test_every_exported_hook_is_covered():
    """A new exported hook must join the run below (else its constants go unchecked)."""
    train_set, test_set = load_dataset("digits", max_train=64, max_test=32)
    probe = (train_set.tensors[0][:16], train_set.tensors[1][:16])
    assert {type(h) for h in _all_hooks(train_set, test_set, probe)} == set(HOOKS)


@pytest.mark.parametrize("cls", HOOKS, ids=lambda c: c.__name__)
def test_constants_are_prefixed_and_listed(cls):
    assert f"{cls.default_name}." == cls.PREFIX
    constants = {v for k, v in vars(cls).items() if k.isupper() and k not in ("PREFIX", "METRICS")}
    assert len(cls.METRICS) == len(set(cls.METRICS)) > 0
    assert set(cls.METRICS) == constants
    assert all(m.startswith(cls.PREFIX) and m.count(".") == 1 for m in cls.METRICS)


def test_constants_match_the_records_of_a_run():
    """A run that triggers every metric: each recorded name is a constant, each constant is
    recorded (so a renamed or dropped metric breaks this test, not a study's figure)."""
    # 3 identical channels: conv1's inputs leave a complement, so orth.ratio/drift are recorded
    train_set, test_set = load_dataset("digits", max_train=128, max_test=64, channels=3)
    torch.manual_seed(0)
    model = build_model(
        "convnet",
        norm="batch",
        in_shape=train_set.in_shape,
        num_classes=10,
        width=4,
        depth=2,
        placement="ic",  # DropoutDependence needs a dropout module
        dropout_keep=0.7,
    )
    probe = (train_set.tensors[0][:32], train_set.tensors[1][:32])
    hooks = _all_hooks(train_set, test_set, probe)
    config = TrainConfig(lr=0.05, batch_size=16, steps=6, eval_every=3, seed=0, device="cpu")
    records = train(model, train_set, test_set, config, hooks).records
    expected = {m for cls in HOOKS for m in cls.METRICS}
    assert set(records.metric) == expected


def test_rename_gives_the_name_a_renamed_instance_records():
    assert rename(HessianSpectrum.EIG, "eig_eval") == "eig_eval.eig"
    assert rename(LossAccuracy.DATA_LOSS, "trainset") == "trainset.data_loss"
    model = torch.nn.Linear(3, 2)
    hook = WeightNorm(name="w")
    rows = hook("after_step", hooks_pkg.Context(model=model))
    assert {metric for metric, _, _ in rows} == {rename(WeightNorm.L2, "w")}
    with pytest.raises(ValueError, match="'eig'"):
        rename("eig", "x")
