"""orthogonal_noise: a smoke run through the CLI on a tiny grid, and the verdicts of SPAN-ORTH and
WRS on synthetic records whose answer is known."""

from itertools import product

import numpy as np
import pandas as pd
import pytest

from normtheory.hooks import OrthogonalWeightNorm
from normtheory.results import Results
from normtheory.stats import EXACT
from normtheory.verdicts import judge_study
from studies.orthogonal_noise import LR, OPTIMIZERS, SETUPS, STUDY, first_layer, orth_table

pytestmark = pytest.mark.usefixtures("one_thread")

SETUP_NAMES = [
    "Convnet, digits on 3 channels",
    "MLP, digits on 3 channels",
    "MLP, teacher of rank 8",
]


def test_orthogonal_noise(study_cli):
    out, rows = study_cli.run("orthogonal_noise", "steps=40")
    span = rows[rows["claim"] == "SPAN-ORTH"].set_index("name")
    assert sorted(span.index) == ["adam_log_drift", "sgd_drift", "wd_decay"]
    # float32 training: SGD leaves W·P⊥ alone up to rounding, WD shrinks it by (1 − ηλ)^t
    assert set(span.loc[["sgd_drift", "wd_decay"], "verdict"]) <= set(EXACT)
    assert 0 < span.loc["sgd_drift", "estimate"] < 1e-5
    assert 0 < span.loc["wd_decay", "estimate"] < 1e-5
    assert span.loc["adam_log_drift", "estimate"] > 1  # Adam leaves the rotated subspace
    wrs = rows[rows["claim"] == "WRS"]
    for name in ("log_orth_ratio", "orth_vs_wd", "acc_vs_wd"):
        assert sorted(wrs[wrs["name"] == name]["condition"]) == SETUP_NAMES
    assert (wrs["n_seeds"] == 2).all() and wrs["estimate"].notna().all()
    study_cli.figures(["orthogonal_component", "drift", "accuracy"])
    table = orth_table(Results.load(out))
    assert sorted(table["setup"].unique()) == SETUP_NAMES
    wd = table[table["tag"] == "SGD+WD"]
    assert wd["ratio"].to_numpy() == pytest.approx(wd["theory"].to_numpy(), rel=1e-5)


def _fake(
    seeds: int = 5,
    *,
    sgd_drift: float = 1e-10,
    wd_dev: float = 1e-10,
    wrs_shrink: tuple = (0.5, 0.5, 0.5),
    wd_shrink: tuple = (0.5, 0.5, 0.5),
    wrs_acc: tuple = (0.0, 0.0, 0.0),
    wd_acc: float = 0.92,
) -> Results:
    """Records of the three setups × five optimizers, 40 steps (every 10): SGD and
    SGD+momentum move W·P⊥ by `sgd_drift` (one record of seed 1, SGD+momentum, convnet; else
    1e-12), SGD+WD follows (1 − ηλ)^t up to a relative `wd_dev` (one record), Adam drifts 0.05
    (× seed noise) in the teacher setup and 1e-7 on the digits. At the end, per setup, WRS's relative
    orthogonal norm is `wrs_shrink` × SGD's and WD's `wd_shrink` × SGD's (seed noise: sd 0.01 on
    the log), its test accuracy
    `wrs_acc` + SGD+WD's (`wd_acc`; seed noise: sd 0.003)."""
    rng = np.random.default_rng(2)
    records, cells = [], []
    for seed, (k, setup), opt in product(range(seeds), enumerate(SETUPS), OPTIMIZERS):
        fields = dict(data_rank=0, data_channels=1, lr=LR, weight_decay=0.0, optimizer="sgd")
        fields.update(setup, **opt)
        cell = dict(cell=f"{k},{opt['tag']}", seed=seed, **fields)
        tag, layer = opt["tag"], first_layer(setup["arch"])
        adam = 0.05 * np.exp(rng.normal(0, 0.1))
        shrink = {"SGD+WRS": wrs_shrink[k], "SGD+WD": wd_shrink[k]}.get(tag, 1)
        relative = 0.8 * shrink * np.exp(rng.normal(0, 0.01))
        for t in range(0, 41, 10):
            decay = (1 - LR * fields["weight_decay"]) ** t
            odd = seed == 1 and t == 30 and k == 0
            drift = {"SGD+WD": 1 - decay, "SGD+WRS": 0.3, "Adam": adam * t / 40}.get(tag, 1e-12)
            if tag == "Adam" and setup["dataset"] != "teacher":
                drift = 1e-7
            if tag == "SGD+momentum" and odd:
                drift = sgd_drift
            ratio = decay * (1 + wd_dev) if tag == "SGD+WD" and odd else decay
            values = dict(ratio=ratio, drift=drift, relative=relative, complement_dim=18)
            records += [
                dict(cell, step=t, metric=OrthogonalWeightNorm.PREFIX + m, key=layer, value=v)
                for m, v in values.items()
            ]
            records.append(dict(cell, step=t, metric=OrthogonalWeightNorm.UPDATES, key="", value=t))
        acc = {"SGD+WD": wd_acc, "SGD+WRS": wd_acc + wrs_acc[k] + rng.normal(0, 0.003)}
        cells.append(dict(cell, status="completed", final_test_acc=acc.get(tag, 0.9)))
    return Results(pd.DataFrame(records), pd.DataFrame(cells), {})


def test_span_orth_verdicts_on_known_records():
    """SGD drift and WD decay at rounding level → exact-holds; one record of SGD+momentum
    drifting, or of WD off (1 − ηλ)^t, beyond the registered tolerance → exact-fails; Adam's
    drift (secondary) is read in the rotated subspace only, one value per seed."""
    holds = judge_study(STUDY, _fake())["SPAN-ORTH"]
    assert holds.verdict == "exact-holds" and holds.n_seeds == 5
    rows = {r.name: r for r in holds.rows}
    assert rows["sgd_drift"].estimate == pytest.approx(1e-10)
    assert rows["wd_decay"].estimate == pytest.approx(1e-10, rel=1e-3)
    adam = rows["adam_log_drift"]
    assert (adam.verdict, adam.n_seeds, adam.primary) == ("supported", 5, False)
    assert adam.estimate == pytest.approx(np.log10(0.05 / 1e-5), abs=0.1)
    assert judge_study(STUDY, _fake(sgd_drift=1e-4))["SPAN-ORTH"].verdict == "exact-fails"
    assert judge_study(STUDY, _fake(wd_dev=1e-4))["SPAN-ORTH"].verdict == "exact-fails"


def test_wrs_verdicts_on_known_records():
    """WRS halves the orthogonal norm and matches WD → supported, one row per setup of 5
    seeds; WRS 5 points worse than WD in one setup → refuted (a setup's reversal is not
    averaged away); WD that does not train → not testable; 3 seeds → underpowered."""
    supported = judge_study(STUDY, _fake())["WRS"]
    assert supported.verdict == "supported"
    per_setup = [(r.name, r.condition, r.n_seeds) for r in supported.rows]
    assert sorted(per_setup) == sorted(
        (name, setup, 5)
        for name in ("log_orth_ratio", "orth_vs_wd", "acc_vs_wd")
        for setup in SETUP_NAMES
    )
    ratio = next(r for r in supported.rows if r.name == "log_orth_ratio")
    assert ratio.estimate == pytest.approx(np.log(0.5), abs=0.02)
    worse = judge_study(STUDY, _fake(wrs_acc=(0.0, -0.05, 0.0)))["WRS"]
    assert worse.verdict == "refuted"
    refuted = [(r.name, r.condition) for r in worse.rows if r.verdict == "refuted"]
    assert refuted == [("acc_vs_wd", "Convnet, digits on 3 channels")]  # SETUPS[1]
    same = judge_study(STUDY, _fake(wrs_shrink=(1.0, 1.0, 1.0)))["WRS"]
    assert same.verdict == "refuted" and same.headline.name == "log_orth_ratio"
    # WRS halves the norm but WD removes far more in one setup: "like WD" fails there
    unlike = judge_study(STUDY, _fake(wd_shrink=(0.5, 0.1, 0.5)))["WRS"]
    assert unlike.verdict == "refuted"
    assert [(r.name, r.condition) for r in unlike.rows if r.verdict == "refuted"] == [
        ("orth_vs_wd", "Convnet, digits on 3 channels")
    ]
    # WD itself removes nothing (as on the digits at the quick scale): not testable
    no_cause = judge_study(STUDY, _fake(wd_shrink=(1.0, 1.0, 1.0), wrs_shrink=(1.0, 1.0, 1.0)))
    assert no_cause["WRS"].verdict == "not testable at this scale"
    assert "WD itself removes orthogonal norm" in no_cause["WRS"].reason
    untrained = judge_study(STUDY, _fake(wd_acc=0.5, wrs_acc=(0.45, 0.45, 0.45)))["WRS"]
    assert untrained.verdict == "not testable at this scale"
    few = judge_study(STUDY, _fake(seeds=3))["WRS"]
    assert (few.verdict, few.note) == ("inconclusive", "underpowered")
