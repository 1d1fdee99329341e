"""ic_layer: the four nets have their modules in the named order, the study's hooks leave
training unchanged, a smoke run through the CLI on a tiny grid, and the verdicts of IC-ORDER and
IC-SIGN on synthetic runs whose answer is known."""

from dataclasses import replace
from itertools import product

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from normtheory.experiment import build_cell_model, cell_data
from normtheory.hooks import GradientSign, LossAccuracy
from normtheory.norms import BatchNorm
from normtheory.results import Results
from normtheory.train import train
from normtheory.verdicts import judge_study
from studies.ic_layer import (
    ACT_NORM,
    BASE,
    BASELINE,
    CASES,
    IC,
    KEEP,
    MATCHED,
    ORDER,
    STUDY,
    hooks,
    per_run,
)

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = replace(BASE, width=4, steps=10, eval_every=5, max_train=128)


def _cell(case: dict):
    return replace(TINY, **{k: v for k, v in case.items() if k != "tag"})


@pytest.mark.parametrize(
    ("case", "unit"),
    [
        (CASES[0], [BatchNorm, nn.ReLU]),
        (CASES[1], [BatchNorm, nn.ReLU, nn.Dropout]),
        (CASES[2], [nn.ReLU, BatchNorm]),
        (CASES[3], [nn.ReLU, BatchNorm, nn.Dropout]),
    ],
    ids=lambda v: v["tag"] if isinstance(v, dict) else "",
)
def test_each_case_has_its_named_module_order(case, unit):
    """W→BN→ReLU, W→BN→ReLU→Drop(q), W→ReLU→BN, IC: W→ReLU→BN→Drop(q): after every conv the
    unit in that order, and both dropout nets with the same p = 1 − q."""
    train_set, _ = cell_data(_cell(case))
    model = build_cell_model(_cell(case), train_set.in_shape, train_set.num_classes, seed=0)
    kinds = [type(m) for m in model.children()]
    convs = [i for i, k in enumerate(kinds) if k is nn.Conv2d]
    assert len(convs) == BASE.depth
    for i in convs:
        assert [issubclass(k, want) for k, want in zip(kinds[i + 1 :], unit)] == [True] * len(unit)
        after = kinds[i + 1 + len(unit)] if i + 1 + len(unit) < len(kinds) else None
        assert after is not nn.Dropout
    drops = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops == ([pytest.approx(1 - KEEP)] * BASE.depth if nn.Dropout in unit else [])


@pytest.mark.parametrize("case", [CASES[1], CASES[3]], ids=lambda c: c["tag"])
def test_the_study_hooks_leave_training_bit_identical(case):
    """The eval-mode fit loss, the information and gradient-sign probes restore mode, buffers,
    gradients and RNG: the dropout nets (which draw masks) train the same with and without them."""
    cell = _cell(case)
    train_set, test_set = cell_data(cell)
    runs = []
    for hook_list in ([], hooks(cell)):
        model = build_cell_model(cell, train_set.in_shape, train_set.num_classes, seed=1)
        result = train(model, train_set, test_set, cell.train_config(1, "cpu"), hook_list)
        runs.append((model.state_dict(), result))
    (s0, r0), (s1, r1) = runs
    assert all(torch.equal(s0[k], s1[k]) for k in s0)
    assert r0.final == r1.final and len(r1.records) > 0


def test_ic_layer(study_cli):
    out, rows = study_cli.run("ic_layer", "steps=30", "width=8", "eval_every=10", seeds="2")
    names = set(zip(rows["claim"], rows["name"]))
    assert names == {
        ("IC-ORDER", "fit_auc_gain"),
        ("IC-ORDER", "jitter_ratio"),
        ("IC-ORDER", "fit_auc_gain_plain"),
        ("IC-ORDER", "jitter_ratio_plain"),
        ("IC-ORDER", "dropout_fit_gain"),
        ("IC-ORDER", "test_acc_gain"),
        ("IC-SIGN", "same_sign_gap"),
        ("IC-SIGN", "same_sign_relu_fed"),
        ("IC-SIGN", "same_sign_ic"),
    }
    sign = rows[rows["claim"] == "IC-SIGN"].set_index("name")
    assert (sign["n_seeds"] == 2).all() and sign["estimate"].notna().all()
    assert sign.loc[["same_sign_relu_fed", "same_sign_ic"], "estimate"].between(0.5, 1).all()
    order = rows[rows["claim"] == "IC-ORDER"]
    assert (order["n_seeds"] == 2).all() and order["estimate"].notna().all()
    assert set(order["note"]) == {"underpowered: 2 < 5 seeds"}
    study_cli.figures(["training", "stability", "accuracy", "dependence"])
    runs = per_run(Results.load(out))
    assert len(runs) == 8 and set(runs["tag"]) == set(ORDER)
    assert (runs["fit_auc"] > 0).all() and (runs["jitter"] > 0).all()
    assert runs["final_test_acc"].between(0, 1).all()


RESNET_LAYERS = ("stem.conv", "stage1.block1.conv1", "stage1.block1.conv2", "head")


def _curve(steps, level: float, jitter: float) -> np.ndarray:
    """0.3 + e^(−t/60) + `level`, times e^(±`jitter`) alternating over the last half."""
    wiggle = np.where(steps >= 150, jitter * (-1.0) ** (steps // 5), 0.0)
    return (0.3 + np.exp(-steps / 60) + level) * np.exp(wiggle)


def _fake(
    seeds: int = 5,
    ic_gain: float = 0.1,
    matched_cost: float = 0.03,
    jitter_gain: float = 0.7,
    base_acc: float = 0.95,
    matched_acc: float = 0.95,
    sign_gap: float = 0.45,
    datasets=("digits",),
    arch: str | None = None,
) -> Results:
    """Runs of the four cases. Eval-mode training-subset loss (the fit loss): IC lies `ic_gain`
    below W→BN→ReLU, W→BN→ReLU→Drop `matched_cost` above it, W→ReLU→BN 0.05 below it; over the
    last half every curve wiggles by e^(±0.05) except IC's, e^(±0.05 e^−`jitter_gain`) (seed
    noise 0.01 on IC's level and log wiggle). The training-batch loss of the dropout nets is
    0.2 above their fit loss (the dropout handicap) and must not count. IC's accuracy is 0.96,
    the baselines' `base_acc` and `matched_acc`. At the last measurement the same-sign fraction
    of the layers after the first is 0.95 for W→BN→ReLU, 0.95 − `sign_gap` for W→ReLU→BN and
    0.5 for IC and the matched net (seed noise 0.01; earlier steps and the first layer read 0.2,
    and must not count); the same on each of `datasets`. With ``arch="resnet"`` the cells carry
    their arch and the layers are a ResNet's, the first its stem (``stem.conv``)."""
    rng = np.random.default_rng(0)
    steps = np.arange(0, 301, 5)
    records, cells = [], []
    for seed in range(seeds):
        noise, wiggle_noise = rng.normal(0, 0.01, 2)
        for dataset, tag in product(datasets, ORDER):
            level = {BASELINE: 0.0, MATCHED: matched_cost, ACT_NORM: -0.05}.get(
                tag, -ic_gain - noise
            )
            jitter = 0.05 * (np.exp(-jitter_gain - wiggle_noise) if tag == IC else 1.0)
            fit = _curve(steps, level, jitter)
            batch = fit + (0.2 if tag in (MATCHED, IC) else 0.0)
            acc = {BASELINE: base_acc, MATCHED: matched_acc, IC: 0.96 + noise}.get(tag, 0.97)
            cell = dict(cell=f"{dataset},{tag}", seed=seed, dataset=dataset, tag=tag)
            cell |= {"arch": arch} if arch else {}
            for name, values in [
                (LossAccuracy.DATA_LOSS, fit),
                (LossAccuracy.TRAIN_LOSS, batch),
                (LossAccuracy.TEST_LOSS, fit + 0.1),
            ]:
                records += [
                    dict(cell, step=t, metric=name, key="", value=v) for t, v in zip(steps, values)
                ]
            last = {BASELINE: 0.95, ACT_NORM: 0.95 - sign_gap}.get(tag, 0.5) + rng.normal(0, 0.01)
            layers = RESNET_LAYERS if arch == "resnet" else ("conv1", "conv2", "conv3", "head")
            for t, layer in product((0, 100, 300), layers):
                fraction = last if t == 300 and layer != layers[0] else 0.2
                records.append(
                    dict(cell, step=t, metric=GradientSign.SAME_SIGN, key=layer, value=fraction)
                )
            cells.append(dict(cell, status="completed", final_test_acc=acc))
    return Results(pd.DataFrame(records), pd.DataFrame(cells), {})


def test_ic_order_verdicts_on_known_runs():
    """IC fits faster and is steadier than the dropout-matched net → supported, with the fit
    area of the eval-mode loss (not the dropout-on batch loss) against the right baselines;
    slower → refuted (reversal); as jittery → refuted; a baseline that does not train → not
    testable; 3 seeds → underpowered."""
    holds = judge_study(STUDY, _fake())["IC-ORDER"]
    assert holds.verdict == "supported"
    rows = {r.name: r for r in holds.rows}
    assert {n for n, r in rows.items() if r.primary} == {"fit_auc_gain", "jitter_ratio"}
    assert rows["fit_auc_gain"].estimate == pytest.approx(0.13, abs=0.01)  # vs the matched net
    assert rows["fit_auc_gain_plain"].estimate == pytest.approx(0.1, abs=0.01)
    assert rows["dropout_fit_gain"].estimate == pytest.approx(0.05, abs=0.01)
    assert rows["jitter_ratio"].estimate == pytest.approx(0.7, abs=0.05)
    assert rows["jitter_ratio_plain"].estimate == pytest.approx(0.7, abs=0.05)
    assert rows["test_acc_gain"].estimate == pytest.approx(0.01, abs=0.01)
    slower = judge_study(STUDY, _fake(ic_gain=-0.1))["IC-ORDER"]
    assert slower.verdict == "refuted" and slower.headline.note == "reversal"
    assert slower.headline.name == "fit_auc_gain"
    jittery = judge_study(STUDY, _fake(jitter_gain=0.0))["IC-ORDER"]
    assert jittery.verdict == "refuted" and jittery.headline.name == "jitter_ratio"
    untrained = judge_study(STUDY, _fake(base_acc=0.5))["IC-ORDER"]
    assert untrained.verdict == "not testable at this scale" and "baseline" in untrained.reason
    matched = judge_study(STUDY, _fake(matched_acc=0.5))["IC-ORDER"]
    assert matched.verdict == "not testable at this scale" and "dropout-matched" in matched.reason
    few = judge_study(STUDY, _fake(seeds=3))["IC-ORDER"]
    assert (few.verdict, few.note) == ("inconclusive", "underpowered")
    two = judge_study(STUDY, _fake(datasets=("digits", "mnist1d")))["IC-ORDER"]
    assert two.verdict == "supported" and two.n_seeds == 5  # datasets are not extra seeds


def test_ic_sign_verdicts_on_known_runs():
    """W→BN→ReLU rows 0.45 more one-signed than W→ReLU→BN → supported, with the estimates of the
    last measurement of the layers after the first; no gap → refuted; a baseline that does not
    train → not testable; 3 seeds → underpowered."""
    holds = judge_study(STUDY, _fake())["IC-SIGN"]
    assert holds.verdict == "supported" and holds.n_seeds == 5
    rows = {r.name: r for r in holds.rows}
    assert rows["same_sign_gap"].estimate == pytest.approx(0.45, abs=0.02)
    assert rows["same_sign_relu_fed"].estimate == pytest.approx(0.95, abs=0.01)
    assert rows["same_sign_ic"].estimate == pytest.approx(0.5, abs=0.01)
    assert judge_study(STUDY, _fake(sign_gap=0.0))["IC-SIGN"].verdict == "refuted"
    untrained = judge_study(STUDY, _fake(base_acc=0.5))["IC-SIGN"]
    assert untrained.verdict == "not testable at this scale" and "85 %" in untrained.reason
    few = judge_study(STUDY, _fake(seeds=3))["IC-SIGN"]
    assert (few.verdict, few.note) == ("inconclusive", "underpowered")


def test_ic_sign_leaves_out_the_first_layer_of_a_resnet_too():
    """The paper profile's ResNet: its data-fed layer is ``stem.conv``, not ``conv1`` (a block's
    ``stage1.block1.conv1`` is fed by a ReLU and counts); the estimates are those of the convnet."""
    rows = {r.name: r for r in judge_study(STUDY, _fake(arch="resnet"))["IC-SIGN"].rows}
    assert rows["same_sign_gap"].estimate == pytest.approx(0.45, abs=0.02)
    assert rows["same_sign_relu_fed"].estimate == pytest.approx(0.95, abs=0.01)
    assert rows["same_sign_ic"].estimate == pytest.approx(0.5, abs=0.01)


def test_ic_order_counts_a_diverged_run_as_accuracy_zero():
    """Final test accuracy follows the one final-metric policy: a diverged IC net counts as
    accuracy 0 (its seed's gain is about −0.95, not missing); a failed run is left out."""
    fake = _fake()
    cells = fake.cells.copy()
    diverged = (cells["tag"] == IC) & (cells["seed"] == 0)
    cells.loc[diverged, ["status", "final_test_acc"]] = ["diverged", np.nan]
    cells.loc[(cells["tag"] == IC) & (cells["seed"] == 1), "status"] = "failed"
    results = Results(fake.records, cells, {})
    runs = per_run(results).set_index(["tag", "seed"])["final_test_acc"]
    assert runs[IC, 0] == 0 and np.isnan(runs[IC, 1])
    gain = {r.name: r for r in judge_study(STUDY, results)["IC-ORDER"].rows}["test_acc_gain"]
    assert gain.n_seeds == 4  # the failed seed has no pair
    assert gain.estimate == pytest.approx((-0.95 + 3 * 0.01) / 4, abs=0.01)
