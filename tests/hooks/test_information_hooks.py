"""NeuronInformation records what the measurement functions give on the captured activations,
leaves training alone, and the same-sign fraction matches a naive loop."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from normtheory.data import load_dataset
from normtheory.hooks import Monitor, NeuronInformation
from normtheory.hooks.information import unit_samples
from normtheory.measure.information import pairwise_correlation, pairwise_mutual_information, upper
from normtheory.measure.weights import same_sign_fraction
from normtheory.models import build_model
from normtheory.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


def _convnet(placement="norm_act", keep=1.0, seed=0):
    train_set, _ = load_dataset("digits", max_train=512)
    torch.manual_seed(seed)
    model = build_model(
        "convnet",
        norm="batch",
        in_shape=train_set.in_shape,
        num_classes=10,
        width=8,
        depth=2,
        placement=placement,
        dropout_keep=keep,
    )
    return model, train_set


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


def test_unit_samples_pool_and_positions():
    acts = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 2, 2)
    torch.testing.assert_close(unit_samples(acts), acts.flatten(2).mean(2))
    gen = torch.Generator().manual_seed(0)
    pos = unit_samples(acts, conv="positions", n_positions=5, generator=gen)
    assert pos.shape == (10, 3)
    flat = acts.flatten(2)
    for row_index, row in enumerate(pos):  # every sample is one (example, position) C-vector
        n = row_index // 5
        assert any(torch.equal(row, flat[n, :, s]) for s in range(4))
    with pytest.raises(ValueError, match="conv"):
        unit_samples(acts, conv="nope")


def test_records_equal_direct_measurements_on_the_captured_inputs():
    model, train_set = _convnet()
    probe = train_set.inputs[:300]
    hook = NeuronInformation(probe=probe, layers=["conv2", "head"], n_shuffles=2, every=5)
    captured = {}

    def keep(name):
        def hook(module, args, output):
            captured.setdefault(name, args[0].detach().clone())

        return hook

    handles = [getattr(model, n).register_forward_hook(keep(n)) for n in ("conv2", "head")]
    model.train()
    with torch.no_grad():
        model(probe)
    for h in handles:
        h.remove()
    rows = {(m, k): v for m, k, v in hook.measure(model)}
    for name in ("conv2", "head"):
        units = unit_samples(captured[name])
        corr = pairwise_correlation(units)
        mi = pairwise_mutual_information(units, method="binned", n_shuffles=2, seed=0)
        assert rows["corr_abs", name] == pytest.approx(float(upper(corr).abs().mean()), rel=1e-9)
        assert rows["mi", name] == pytest.approx(float(upper(mi).mean()), rel=1e-9)
        assert rows["dead", name] == len(mi.dead)
        assert rows["same_sign", name] == pytest.approx(
            same_sign_fraction(getattr(model, name), captured[name])
        )
        assert 0 <= rows["mi_floor", name] < rows["mi", name]
    # W→BN→ReLU: the head's input is a pooled ReLU output, non-negative: one-signed rows.
    assert rows["same_sign", "head"] == 1.0


def test_same_sign_is_one_after_relu_and_near_half_with_bn_after_relu():
    fractions = {}
    for placement in ("norm_act", "act_norm"):
        model, train_set = _convnet(placement)
        rows = {
            (m, k): v
            for m, k, v in NeuronInformation(
                probe=train_set.inputs[:200], layers=["conv2"]
            ).measure(model)
        }
        fractions[placement] = rows["same_sign", "conv2"]
    assert fractions["norm_act"] == 1.0
    assert 0.5 <= fractions["act_norm"] < 0.8


def test_probe_leaves_dropout_stream_and_running_stats_alone():
    model, train_set = _convnet("ic", keep=0.5)
    hook = NeuronInformation(probe=train_set.inputs[:64], every=2)
    config = TrainConfig(lr=0.05, batch_size=32, steps=6, seed=0, device="cpu")
    results = []
    for hooks in ([], [hook]):
        model, train_set = _convnet("ic", keep=0.5)
        train(model, train_set, None, config, hooks)
        results.append(torch.cat([t.flatten().float() for t in model.state_dict().values()]))
    assert torch.equal(*results)


def test_bad_arguments():
    model, train_set = _convnet()
    with pytest.raises(ValueError, match="unknown layers \\['nope'\\]"):
        NeuronInformation(probe=train_set.inputs[:10], layers=["nope"]).measure(model)
    with pytest.raises(ValueError, match="side"):
        NeuronInformation(probe=train_set.inputs[:10], side="middle")
    with pytest.raises(ValueError, match="max_units must be >= 2"):
        NeuronInformation(probe=train_set.inputs[:10], max_units=1)


def test_in_your_own_loop():
    model, train_set = _convnet()
    monitor = Monitor(model, [NeuronInformation(probe=(train_set.inputs[:100], None), every=10)])
    rows = monitor.start()
    metrics = {r[1] for r in rows}
    assert {"info.corr_abs", "info.mi", "info.same_sign", "info.atom"} <= metrics
    assert {r[2] for r in rows} == {"conv1", "conv2", "head"}
    assert not list(itertools.chain(*(m._forward_hooks.values() for m in model.modules())))
