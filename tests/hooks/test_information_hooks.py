"""NeuronInformation and GradientSign record what the measurement functions give on the probe
batch and leave training alone."""

import itertools
from collections import OrderedDict

import pytest
import torch

from normtheory.data import load_dataset
from normtheory.hooks import (
    DropoutDependence,
    GradientSign,
    Monitor,
    NeuronInformation,
    at_end,
    every,
)
from normtheory.hooks.information import unit_samples
from normtheory.measure.dropout import module_dropout_ratios
from normtheory.measure.gradient_sign import gradient_sign
from normtheory.measure.information import pairwise_correlation, pairwise_mutual_information, upper
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
        assert 0 <= rows["mi_floor", name] < rows["mi", name]


def test_gradient_sign_records_the_measure_and_leaves_training_alone():
    """Records equal `gradient_sign` on the probe (train mode); the head of W→BN→ReLU, fed by
    a pooled ReLU output with no BN after it, is one-signed; a run with the hook on the IC net
    (dropout) ends in exactly the state of a run without it."""
    model, train_set = _convnet()
    probe = (train_set.tensors[0][:48], train_set.tensors[1][:48])
    rows = {
        (m, k): v for m, k, v in GradientSign(probe=probe, layers=["conv2", "head"]).measure(model)
    }
    want = gradient_sign(model, *probe, layers=["conv2", "head"])
    for name in ("conv2", "head"):
        assert rows["same_sign", name] == want[name].same_sign
        assert rows["one_signed", name] == want[name].one_signed
    assert rows["same_sign", "head"] == 1.0 and rows["same_sign", "conv2"] < 0.9
    config = TrainConfig(lr=0.05, batch_size=32, steps=4, seed=0, device="cpu")
    states = []
    for hooks in ([], [GradientSign(probe=probe, every=2)]):
        model, train_set = _convnet("ic", keep=0.5)
        train(model, train_set, None, config, hooks)
        states.append(torch.cat([t.flatten().float() for t in model.state_dict().values()]))
    assert torch.equal(*states)
    with pytest.raises(ValueError, match="targets"):
        GradientSign(probe=train_set.inputs[:8])


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
    assert {"info.corr_abs", "info.mi", "info.atom"} <= metrics
    assert {r[2] for r in rows} == {"conv1", "conv2", "head"}
    assert not list(itertools.chain(*(m._forward_hooks.values() for m in model.modules())))


def _mlp(seed=0):
    train_set, _ = load_dataset("digits", max_train=512)
    torch.manual_seed(seed)
    model = build_model(
        "mlp", norm="batch", in_shape=train_set.in_shape, num_classes=10, width=16, depth=2
    )
    return model, train_set


def _ic_mlp(keep=0.5, seed=0):
    train_set, _ = load_dataset("digits", max_train=512)
    torch.manual_seed(seed)
    model = build_model(
        "mlp",
        norm="batch",
        in_shape=train_set.in_shape,
        num_classes=10,
        width=16,
        depth=2,
        placement="ic",
        dropout_keep=keep,
    )
    return model, train_set


def _centre(acts):
    ic = acts["drop1"]
    return {"ic": ic, "centred": ic - ic.mean(0), "relu": acts["norm1"]}


def test_dropout_dependence_records_the_ic_layers_own_dropout_once_at_the_end():
    """At the end of training (and only then) the records are `module_dropout_ratios` of the
    inputs of the IC layer's ``drop1`` (train mode, probe batch statistics) and of ``norm1``
    through that module, with the hook's seed; training is bit-identical with and without the
    hook, and the hook leaves the run's RNG stream where it found it."""
    config = TrainConfig(lr=0.05, batch_size=32, steps=7, seed=0, device="cpu")
    states, rng = [], []
    for with_hook in (False, True):
        model, train_set = _ic_mlp(keep=0.6)
        probe = train_set.inputs[:256]
        hook = DropoutDependence(
            probe=(probe, None),
            dropout="drop1",
            capture=("drop1", "norm1"),
            blocks=_centre,
            n_masks=4,
            seed=5,
            every=every(2),  # also mid-run, so a moved RNG stream would change the next masks
        )
        hooks = [hook] if with_hook else []
        result = train(model, train_set, None, config, hooks)
        states.append(torch.cat([t.flatten().float() for t in model.state_dict().values()]))
        rng.append(torch.get_rng_state())
    assert torch.equal(*states)  # parameters and BN running statistics: the same run
    assert torch.equal(*rng)  # the hook drew its masks from a stream it restored
    records = result.records
    assert set(records["step"]) == {0, 2, 4, 6}  # steps 0..6; the last one is the final net
    assert set(records["metric"]) == set(DropoutDependence.METRICS)
    records = records[records["step"] == 6]
    rows = {(m, k): v for m, k, v in records[["metric", "key", "value"]].itertuples(index=False)}
    assert len(rows) == len(records) == 3 * 6
    acts = {}
    handles = [
        getattr(model, n).register_forward_pre_hook(lambda m, a, n=n: acts.setdefault(n, a[0]))
        for n in ("drop1", "norm1")
    ]
    with torch.no_grad():
        model.train()(probe)
    for h in handles:
        h.remove()
    for block, units in _centre({n: a.double() for n, a in acts.items()}).items():
        expected = module_dropout_ratios(units, model.drop1, n_masks=4, seed=5)
        assert expected.keep == 0.6
        assert rows[DropoutDependence.CORR_RATIO, f"{block}|0.6"] == expected.corr
        assert rows[DropoutDependence.MI_RATIO, f"{block}|0.6"] == expected.mi
        assert rows[DropoutDependence.CONSTANT, block] == expected.n_constant
        live = units[:, units.std(0) > 0]  # dead units are left out
        assert rows[DropoutDependence.ATOM, block] == float((live == 0).double().mean())
    bn = model.norm1
    beta_over_gamma = float((bn.bias / bn.weight).abs().mean().detach())
    assert rows[DropoutDependence.MEAN_OVER_STD, "ic"] == pytest.approx(beta_over_gamma, rel=0.01)
    assert rows[DropoutDependence.MEAN_OVER_STD, "centred"] < 1e-6
    assert rows[DropoutDependence.ATOM, "relu"] > 0.2 and rows[DropoutDependence.ATOM, "ic"] == 0
    assert rows[DropoutDependence.TIED, "ic"] == rows[DropoutDependence.TIED, "relu"] > 0.2


@pytest.mark.parametrize("beta", [0.0, 1.5])
def test_dropout_dependence_on_a_constructed_ic_block(beta):
    """Known answer: Gaussian units through BN (train mode, γ = 1, β) and the block's own
    Dropout(1 − q). β = 0: ratios q and q²; β = 1.5: the correlation factor is the closed form
    q / (1 + (1 − q) β²) < q, while MI (no mass at 0) still scales by q²."""
    q, n, d = 0.5, 2048, 6
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, 2, generator=g) @ torch.randn(2, d, generator=g)
    x = z + 0.7 * torch.randn(n, d, generator=g) + 3.0  # BN removes the input's mean
    block = torch.nn.Sequential(
        OrderedDict(norm1=torch.nn.BatchNorm1d(d), drop1=torch.nn.Dropout(1 - q))
    )
    torch.nn.init.constant_(block.norm1.bias, beta)
    block.eval()
    hook = DropoutDependence(probe=x, dropout="drop1", n_masks=16, seed=1)
    rows = {(f"ic.{m}", k): v for m, k, v in hook.measure(block)}
    corr, mi = (
        rows[DropoutDependence.CORR_RATIO, "drop1|0.5"],
        rows[DropoutDependence.MI_RATIO, "drop1|0.5"],
    )
    assert rows[DropoutDependence.MEAN_OVER_STD, "drop1"] == pytest.approx(beta, abs=1e-3)
    assert corr == pytest.approx(q / (1 + (1 - q) * beta**2), abs=0.02)
    assert mi == pytest.approx(q**2, abs=0.03)
    assert not block.training and float(block.norm1.running_mean.abs().max()) == 0


def test_dropout_dependence_schedule_and_bad_arguments():
    model, train_set = _ic_mlp()
    probe = train_set.inputs[:64]
    hook = DropoutDependence(probe=probe, dropout="drop1")
    assert repr(hook.schedule) == repr(at_end()) and hook.events == ("after_step", "end")
    assert not hook.scheduled("after_step", 0, 10) and hook.scheduled("end", 10, 10)
    assert {k for _, k, _ in hook.measure(model)} == {"drop1", "drop1|0.5"}
    stepped = DropoutDependence(probe=probe, dropout="drop1", every=every(3))
    assert stepped.scheduled("after_step", 3) and not stepped.scheduled("after_step", 4)
    with pytest.raises(ValueError, match="unknown modules"):
        DropoutDependence(probe=probe, dropout="nope").measure(model)
    with pytest.raises(TypeError, match="not an nn.Dropout"):
        DropoutDependence(probe=probe, dropout="norm1").measure(model)
    with pytest.raises(ValueError, match="n_masks"):
        DropoutDependence(probe=probe, dropout="drop1", n_masks=0)
