"""ic_layer: a smoke run through the CLI on a tiny grid, and the verdicts of IC-ORDER and IC-SIGN
on synthetic runs whose answer is known."""

from itertools import product

import numpy as np
import pandas as pd
import pytest

from normtheory.hooks import GradientSign, LossAccuracy
from normtheory.results import Results
from normtheory.verdicts import judge_study
from studies.ic_layer import ACT_NORM, BASELINE, IC, ORDER, STUDY, per_run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ic_layer(study_cli):
    out, rows = study_cli.run("ic_layer", "steps=20", "width=8", "eval_every=10", seeds="2")
    names = set(zip(rows["claim"], rows["name"]))
    assert names == {
        ("IC-ORDER", "train_auc_gain"),
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
    study_cli.figures(["training", "accuracy", "dependence"])
    runs = per_run(Results.load(out))
    assert len(runs) == 6 and runs["train_auc"].notna().all()
    assert runs["final_test_acc"].between(0, 1).all()


def _fake(
    seeds: int = 5,
    ic_gain: float = 0.1,
    base_acc: float = 0.95,
    sign_gap: float = 0.45,
    datasets=("digits",),
) -> Results:
    """Runs of the three placements on the digits: IC's training loss lies `ic_gain` below the
    baseline's (seed noise 0.01), IC's accuracy is 0.96 (the baseline's `base_acc`); at the last
    measurement the same-sign fraction of the layers after the first is 0.95 for W→BN→ReLU,
    0.95 − `sign_gap` for W→ReLU→BN and 0.5 for IC (seed noise 0.01; earlier steps and the first
    layer read 0.2, and must not count); the same on each of `datasets`."""
    rng = np.random.default_rng(0)
    steps = np.arange(0, 301, 5)
    records, cells = [], []
    for seed in range(seeds):
        noise = rng.normal(0, 0.01)
        for dataset, tag in product(datasets, ORDER):
            shift = {BASELINE: 0.0, IC: -ic_gain - noise}.get(tag, -0.05)
            acc = {BASELINE: base_acc, IC: 0.96 + noise}.get(tag, 0.97)
            loss = 0.3 + np.exp(-steps / 60) + shift
            cell = dict(cell=f"{dataset},{tag}", seed=seed, dataset=dataset, tag=tag)
            records += [
                dict(cell, step=t, metric=LossAccuracy.TRAIN_LOSS, key="", value=v)
                for t, v in zip(steps, loss)
            ]
            records += [
                dict(cell, step=t, metric=LossAccuracy.TEST_LOSS, key="", value=v + 0.1)
                for t, v in zip(steps, loss)
            ]
            last = {BASELINE: 0.95, ACT_NORM: 0.95 - sign_gap, IC: 0.5}[tag] + rng.normal(0, 0.01)
            for t, layer in product((0, 100, 300), ("conv1", "conv2", "conv3", "head")):
                fraction = last if t == 300 and layer != "conv1" else 0.2
                records.append(
                    dict(cell, step=t, metric=GradientSign.SAME_SIGN, key=layer, value=fraction)
                )
            cells.append(dict(cell, status="completed", final_test_acc=acc))
    return Results(pd.DataFrame(records), pd.DataFrame(cells), {})


def test_ic_order_verdicts_on_known_runs():
    """IC trains faster → supported; slower → refuted; a baseline that does not train → not
    testable; 3 seeds → underpowered."""
    assert judge_study(STUDY, _fake())["IC-ORDER"].verdict == "supported"
    refuted = judge_study(STUDY, _fake(ic_gain=-0.1))["IC-ORDER"]
    assert refuted.verdict == "refuted" and refuted.headline.note == "reversal"
    untrained = judge_study(STUDY, _fake(base_acc=0.5))["IC-ORDER"]
    assert untrained.verdict == "not testable at this scale"
    assert "baseline" in untrained.reason
    few = judge_study(STUDY, _fake(seeds=3))["IC-ORDER"]
    assert (few.verdict, few.note) == ("inconclusive", "underpowered")
    rows = {r.name: r for r in judge_study(STUDY, _fake())["IC-ORDER"].rows}
    assert rows["train_auc_gain"].estimate == pytest.approx(0.1, abs=0.01)
    assert rows["test_acc_gain"].estimate == pytest.approx(0.01, abs=0.01)
    assert not rows["test_acc_gain"].primary
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
