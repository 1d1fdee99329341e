"""Curvature hooks record exactly what the measurement functions return on the probe batch."""

import pytest
import torch
import torch.nn.functional as F

from normtheory.data import load_dataset
from normtheory.hooks import HessianSpectrum, HessianTrace, Monitor, OneStepLoss, Smoothness
from normtheory.measure import gradient_smoothness, hessian_eigenvalues, hessian_trace
from normtheory.measure.scale_invariant import invariant_metric
from normtheory.models import build_model


@pytest.fixture(scope="module")
def setup():
    train_set, _ = load_dataset("digits", max_train=128)
    torch.manual_seed(0)
    model = build_model(
        "convnet", norm="batch", in_shape=(1, 8, 8), num_classes=10, width=6, depth=2
    )
    return model, (train_set.inputs[:64], train_set.targets[:64])


def _values(monitor, metric):
    frame = monitor.frame()
    return frame[frame.metric == metric].set_index("key")["value"]


def test_spectrum_trace_smoothness_match_direct_calls(setup):
    model, probe = setup
    hooks = [
        HessianSpectrum(probe=probe, k=2, every=1),
        HessianTrace(probe=probe, n_hvp=12, every=1, mode="eval"),
        Smoothness(probe=probe, lr=0.05, every=1, n_points=4),
        OneStepLoss(probe=probe, lr=0.05),
    ]
    monitor = Monitor(model, hooks)
    monitor.start()
    monitor.after_step(0)
    eig = hessian_eigenvalues(model, F.cross_entropy, probe, k=2, tol=1e-3)
    assert list(_values(monitor, "hessian.eig")) == pytest.approx(eig.values.tolist(), rel=1e-4)
    trace = hessian_trace(model, F.cross_entropy, probe, mode="eval", n_hvp=12)
    assert _values(monitor, "hessian_trace.trace")[""] == pytest.approx(trace.value, rel=1e-5)
    smooth = gradient_smoothness(model, F.cross_entropy, probe, lr=0.05, n_points=4)
    assert _values(monitor, "smoothness.beta")[""] == pytest.approx(smooth.beta, rel=1e-5)
    one = gradient_smoothness(
        model, F.cross_entropy, probe, lr=0.05, multipliers=(1.0, 1.0), n_points=1
    )
    rel = (one.losses[0].item() - one.loss) / one.loss
    assert _values(monitor, "one_step.relative_change").tolist() == pytest.approx(
        [rel], rel=1e-6
    )  # start only


def test_invariant_options_match_direct_calls_in_the_metric(setup):
    """``invariant=True`` records the measures in `invariant_metric`'s D of the probe batch,
    which differ from the raw ones (the BN net's conv weights are scale-invariant)."""
    model, probe = setup
    hooks = [
        HessianSpectrum(probe=probe, every=1, invariant=True, name="eig_si"),
        Smoothness(probe=probe, lr=0.05, every=1, n_points=4, invariant=True, name="smooth_si"),
    ]
    monitor = Monitor(model, hooks)
    monitor.after_step(0)
    metric = invariant_metric(model, probe[0])
    assert set(metric) == {"conv1.weight", "conv2.weight"}
    eig = hessian_eigenvalues(model, F.cross_entropy, probe, tol=1e-3, metric=metric)
    assert _values(monitor, "eig_si.eig")["1"] == pytest.approx(eig.values[0].item(), rel=1e-4)
    raw = hessian_eigenvalues(model, F.cross_entropy, probe, tol=1e-3)
    assert eig.values[0].item() != pytest.approx(raw.values[0].item(), rel=1e-2)
    smooth = gradient_smoothness(model, F.cross_entropy, probe, lr=0.05, n_points=4, metric=metric)
    assert _values(monitor, "smooth_si.beta")[""] == pytest.approx(smooth.beta, rel=1e-5)


def test_probe_defaults_to_first_training_batch_and_is_kept(setup):
    model, probe = setup
    hook = HessianTrace(n_hvp=4, every=1)
    monitor = Monitor(model, [hook])
    monitor.after_step(0, inputs=probe[0][:16], targets=probe[1][:16])
    monitor.after_step(1, inputs=probe[0][16:32], targets=probe[1][16:32])
    assert torch.equal(hook.probe[0], probe[0][:16])


def test_at_end_only_and_bad_mode(setup):
    model, probe = setup
    hook = HessianSpectrum(probe=probe, at_end=True)
    assert not hook.scheduled("after_step", 0) and hook.scheduled("end", 7)
    with pytest.raises(ValueError, match="mode 'test'"):
        HessianSpectrum(mode="test")


def test_at_start_measures_at_initialization(setup):
    model, probe = setup
    hook = HessianSpectrum(probe=probe, at_start=True, every=5)
    assert hook.scheduled("start", 0) and not hook.scheduled("after_step", 1)
    monitor = Monitor(model, [hook])
    monitor.start()
    eig = hessian_eigenvalues(model, F.cross_entropy, probe, tol=1e-3)
    rows = monitor.frame()
    assert rows.loc[rows.metric == "hessian.eig", "step"].tolist() == [0]
    assert _values(monitor, "hessian.eig")["1"] == pytest.approx(eig.values[0].item(), rel=1e-4)
    assert not HessianSpectrum(probe=probe).scheduled("start", 0)


def test_hessian_trace_checks_its_method_when_built():
    with pytest.raises(ValueError, match="'hutch'.*xtrace"):
        HessianTrace(method="hutch")
    assert HessianTrace(method="xtrace").method == "xtrace"
