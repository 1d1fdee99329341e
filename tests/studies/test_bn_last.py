"""The bn_last study: a smoke run through the CLI on a tiny grid, the accuracy read at the
largest stable probe, and known-answer tests of the BN-LAST verdict on synthetic searches."""

import math

import numpy as np
import pandas as pd
import pytest

from normtheory.results import Results, load
from normtheory.stability import PROBE, probe_table
from normtheory.verdicts import judge_study
from studies.bn_last import FULL, LAST, NONE, STUDY, at_largest_stable

pytestmark = pytest.mark.usefixtures("one_thread")

CLAIM = "BN-LAST"
WIDTH = 0.1


def test_smoke(study_cli):
    out, rows = study_cli.run("bn_last", "steps=10", "width=4")
    assert sorted(rows["name"]) == ["acc_gain", "log10_lr_ratio"]
    claim = study_cli.claims().set_index("claim").loc[CLAIM]
    assert claim["verdict"] in {"inconclusive", "not testable at this scale"}
    study_cli.figures(["stability"])
    cells = Results.load(out).cells
    assert set(cells["tag"]) == {LAST, NONE} and len(cells) == 4
    table = probe_table(load(out), by="tag")
    assert (table.groupby(["tag", "seed"]).size() == cells["final_n_probes"].iloc[0]).all()
    assert not table["stable"].any()  # 10 steps train nothing: no probe is stable


def synthetic(limits, accs, *, seeds=5, unbracketed=()):
    """Searches as `run_cell` stores them: tag t's search at seed s has three probes, at
    limit/2 (stable, accuracy acc − 0.1), at the limit (stable, accuracy `accs[t]` + noise) and
    at 2 × limit (unstable), and max stable LR `limits[t]` with a final bracket WIDTH wide."""
    rng = np.random.default_rng(0)
    cells, records = [], []
    for tag, limit in limits.items():
        for seed in range(seeds):
            ok = (tag, seed) not in unbracketed
            acc = accs[tag] + rng.normal(0, 0.003)
            cells.append(dict(cell=f"tag={tag}", seed=seed, tag=tag, status="completed",
                              steps=150, final_max_stable_lr=limit if ok else np.nan,
                              final_bracket_width=WIDTH if ok else np.nan,
                              final_bracketed=float(ok), final_stability_threshold=0.23))  # fmt: skip
            probes = [(limit / 2, 1.0, acc - 0.1), (limit, float(ok), acc), (2 * limit, 0.0, 0.1)]
            for i, (lr, stable, test_acc) in enumerate(probes):
                for m, v in (
                    ("lr", lr),
                    ("stable", stable),
                    ("test_acc", test_acc),
                    ("train_loss", 0.01),
                    ("test_loss", 0.1),
                    ("steps_done", 150.0),
                ):
                    records.append(dict(cell=f"tag={tag}", seed=seed, tag=tag, step=150,
                                        metric=PROBE + m, key=str(i), value=v))  # fmt: skip
    return Results(pd.DataFrame(records), pd.DataFrame(cells), {})


def test_accuracy_is_read_at_the_largest_stable_probe():
    results = synthetic({LAST: 2.0, NONE: 0.4}, {LAST: 0.95, NONE: 0.9})
    got = at_largest_stable(results.records).set_index(["tag", "seed"])
    assert (got["lr"].loc[LAST] == 2.0).all() and (got["lr"].loc[NONE] == 0.4).all()
    assert got["test_acc"].loc[LAST].mean() == pytest.approx(0.95, abs=0.004)


def verdict(*args, **kw):
    return judge_study(STUDY, synthetic(*args, **kw))[CLAIM]


def test_supported_refuted_not_testable():
    good = verdict({LAST: 2.0, NONE: 0.2, FULL: 4.0}, {LAST: 0.95, NONE: 0.9, FULL: 0.96})
    assert good.verdict == "supported", good.reason
    rows = {r.name: r for r in good.rows}
    assert rows["log10_lr_ratio"].estimate == pytest.approx(1.0)
    assert rows["acc_gain"].estimate == pytest.approx(0.05, abs=0.005)
    assert rows["log10_lr_ratio_full"].estimate == pytest.approx(math.log10(2))
    # larger LRs but a lower accuracy: the claim needs both (rule all)
    worse = verdict({LAST: 2.0, NONE: 0.2}, {LAST: 0.85, NONE: 0.9})
    assert worse.verdict == "refuted"
    same = verdict({LAST: 0.21, NONE: 0.2}, {LAST: 0.95, NONE: 0.9})
    assert same.verdict == "refuted"
    lost = verdict({LAST: 2.0, NONE: 0.2}, {LAST: 0.95, NONE: 0.9}, unbracketed=[(NONE, 1)])
    assert lost.verdict == "not testable at this scale"
