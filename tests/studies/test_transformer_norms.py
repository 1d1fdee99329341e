"""The transformer_norms study: a smoke run through the CLI on a tiny grid, and known-answer tests
of the POSTLN-WARMUP verdict on synthetic searches and curvatures whose values are set."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from normtheory.results import Results, load
from normtheory.stability import probe_table
from normtheory.verdicts import judge_study
from studies.transformer_norms import BASE, CASES, POST, PRE, STUDY, WARM, points

pytestmark = pytest.mark.usefixtures("one_thread")

CLAIM = "POSTLN-WARMUP"
TAGS = [c["tag"] for c in CASES]
WIDTH = 0.125  # the final bracket of an unwidened search: 2 decades halved 4 times


def test_smoke(study_cli):
    out, rows = study_cli.run(
        "transformer_norms", "steps=8", "width=8", "depth=1", "heads=2", seeds="2"
    )
    assert list(rows["name"]) == [
        "log10_lr_ratio_pre_post",
        "log10_lr_gain_warmup_post",
        "log_eig_ratio_init",
        "log_eig_ratio_init_last",
    ]
    claims = study_cli.claims().set_index("claim")
    assert claims.loc[CLAIM, "verdict"] in {"inconclusive", "not testable at this scale"}
    study_cli.figures(["stability", "curvature"])
    records, cells = load(out), Results.load(out).cells
    assert set(cells["status"]) == {"completed"} and len(cells) == 2 * len(CASES)
    assert sorted(cells["tag"].unique()) == sorted(TAGS)
    table = probe_table(records, by="tag")
    assert table["lr"].gt(0).all() and set(table["stable"]) <= {True, False}
    eig = records[records["metric"].isin(["eig_all.eig", "eig_block0.eig"])]
    # λ_max at initialization (step 0) and at each point of the reference run, every config
    steps = sorted({0, *points(dataclasses.replace(BASE, steps=8))})
    assert sorted(eig["step"].unique()) == steps
    assert len(eig) == 2 * len(CASES) * 2 * len(steps) and eig["value"].notna().all()
    init = eig[eig["step"] == 0].pivot_table(
        index=["seed", "metric"], columns="tag", values="value"
    )
    np.testing.assert_allclose(init[POST], init[WARM], rtol=1e-4)  # same weights, same Hessian


def synthetic(limits, eigs, *, seeds=5, width=WIDTH, unbracketed=()):
    """Cells and records as `run_cell` stores them: config t's search at seed s found the max
    stable LR limits[t], and its whole-net and last-block λ_max at initialization are
    eigs[t] = (all, last), each times a factor exp(N(0, 0.05²)) of its own per seed."""
    cells, records = [], []
    rng = np.random.default_rng(0)
    for seed in range(seeds):
        for tag, limit in limits.items():
            noise = np.exp(rng.normal(0, 0.05))
            ok = (tag, seed) not in unbracketed
            cells.append(
                dict(cell=f"tag={tag}", seed=seed, tag=tag, depth=4, lr=3e-3, status="completed",
                     steps=120, final_max_stable_lr=limit * noise if ok else np.nan,
                     final_bracket_width=width if ok else np.nan, final_bracketed=float(ok))
            )  # fmt: skip
            for group, value in zip(("all", "block3"), eigs[tag]):
                records.append(
                    dict(run="r", cell=f"tag={tag}", seed=seed, tag=tag, step=0,
                         metric=f"eig_{group}.eig", key="1", value=value * noise)
                )  # fmt: skip
    return Results(pd.DataFrame(records), pd.DataFrame(cells), {})


LIMITS = {PRE: 0.1, POST: 0.02, WARM: 0.08, "pre-RMSNorm": 0.1, "no norm": 0.01}
EIGS = {PRE: (50.0, 5.0), POST: (200.0, 40.0), WARM: (200.0, 40.0), "pre-RMSNorm": (50.0, 5.0),
        "no norm": (80.0, 8.0)}  # fmt: skip


def verdict(results):
    return judge_study(STUDY, results)[CLAIM]


def test_supported():
    v = verdict(synthetic(LIMITS, EIGS))
    assert v.verdict == "supported", v.reason
    assert v.headline.estimate == pytest.approx(np.log10(5.0), abs=0.05)
    assert [value for _, value, _ in v.checks] == [1.0]


def test_refuted_when_post_ln_is_as_stable_and_as_flat():
    flat = {**LIMITS, POST: 0.1, WARM: 0.1}
    v = verdict(synthetic(flat, {**EIGS, POST: (50.0, 5.0), WARM: (50.0, 5.0)}))
    assert v.verdict == "refuted", v.reason


def test_large_curvature_alone_is_not_enough():
    """Rule all: a large Post-LN curvature without a lower stable LR does not support it."""
    v = verdict(synthetic({**LIMITS, POST: 0.1, WARM: 0.1}, EIGS))
    assert v.verdict != "supported"


@pytest.mark.parametrize("tag", [PRE, POST, WARM])
def test_an_unbracketed_tested_search_makes_it_not_testable(tag):
    v = verdict(synthetic(LIMITS, EIGS, unbracketed=[(tag, 2)]))
    assert v.verdict == "not testable at this scale"
    assert [value for _, value, _ in v.checks] == [pytest.approx(14 / 15)]


def test_an_unbracketed_untested_search_does_not_matter():
    v = verdict(synthetic(LIMITS, EIGS, unbracketed=[("no norm", 1)]))
    assert v.verdict == "supported", v.reason


def test_three_seeds_underpowered():
    v = verdict(synthetic(LIMITS, EIGS, seeds=3))
    assert (v.verdict, v.note) == ("inconclusive", "underpowered")
