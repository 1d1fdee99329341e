"""The hessian_depth study: smoke runs through the CLI on tiny grids, and known-answer tests of the
BN-DEPTH-HESS verdict on synthetic end-of-training Hessians whose log gaps are set."""

import numpy as np
import pandas as pd
import pytest

from normtheory.claims import get_claim
from normtheory.results import Results, load
from normtheory.verdicts import judge_study
from studies.hessian_depth import STUDY

pytestmark = pytest.mark.usefixtures("one_thread")

CLAIM = "BN-DEPTH-HESS"
FIGURES = ["top_eigs", "density_eval", "density_train"]
METRICS = ["eig_eval.eig", "eig_train.eig", "trace_eval.trace", "density_eval.node"]
TRACE_FACTOR, TRAIN_SHIFT = 1.5, -3.0  # so that a statistic read off the wrong metric shows


def _smoke(study_cli, *overrides, seeds):
    out, rows = study_cli.run("hessian_depth", "steps=5", "width=4", *overrides, seeds=seeds)
    assert set(rows["name"]) == {s.name for s in get_claim(CLAIM).test.statistics}
    claims = study_cli.claims().set_index("claim")
    # 5 steps train no net to 50 %: every seed is dropped and the check says so.
    assert claims.loc[CLAIM, "verdict"] == "not testable at this scale"
    study_cli.figures(FIGURES)
    records = load(out)
    for metric in METRICS:
        values = records.loc[records["metric"] == metric, "value"]
        assert len(values) and np.isfinite(values).all(), metric
    weights = records[records["metric"] == "density_eval.weight"]
    per_quadrature = weights.groupby(["cell", "seed", weights["key"].str.split(":").str[0]])
    assert per_quadrature["value"].sum().to_numpy() == pytest.approx(1.0)
    return records


def test_smoke(study_cli):
    """One depth (deep = shallow): the Hessian measurements dominate, ~10 s a cell on 2 cores."""
    _smoke(study_cli, "depth=8", "residual=true", seeds="1")


@pytest.mark.slow
def test_smoke_two_depths(study_cli):
    records = _smoke(study_cli, "depth=8,14", seeds="2")
    assert set(records["depth"]) == {8, 14} and set(records["residual"]) == {True, False}


def synthetic(deep_gap, *, seeds=5, shallow_gap=0.0, untrained=()):
    """Results of the grid (depth 8/20, ± residual, ± BN) with log λ_max and log tr H gaps
    none − BN of `deep_gap` for the depth-20 residual nets and `shallow_gap` for the depth-8 ones
    (sd 0.1 over seeds; the trace's gap is `TRACE_FACTOR` times larger, train mode's is shifted
    by `TRAIN_SHIFT`); the plain nets have a gap of −5 (a collapsed net's flat
    Hessian). `untrained`: (depth, residual, norm, seed) cells at 10 % test accuracy."""
    rng = np.random.default_rng(1)
    records, cells = [], []
    for depth in (8, 20):
        for residual in (True, False):
            gap = (deep_gap if depth == 20 else shallow_gap) if residual else -5.0
            for seed in range(seeds):
                noise = rng.normal(0, 0.1)
                base = {"eig": rng.lognormal(1, 1), "trace": rng.lognormal(3, 1)}
                for norm in ("batch", "none"):
                    cell = f"depth={depth},residual={residual},norm={norm}"
                    acc = 0.1 if (depth, residual, norm, seed) in untrained else 0.9
                    cells.append(
                        dict(cell=cell, seed=seed, status="completed", depth=depth,
                             residual=residual, norm=norm, final_test_acc=acc)
                    )  # fmt: skip
                    for q, key in (("eig", "1"), ("trace", "")):
                        for mode in ("eval", "train"):
                            shift = TRAIN_SHIFT if mode == "train" else 0.0
                            log_gap = gap * TRACE_FACTOR ** (q == "trace") + shift + noise
                            value = base[q] * np.exp(log_gap * (norm == "none"))
                            records.append(
                                dict(run="syn", cell=cell, seed=seed, step=200,
                                     metric=f"{q}_{mode}.{q}", key=key, value=value,
                                     depth=depth, residual=residual, norm=norm)
                            )  # fmt: skip
    return Results(pd.DataFrame(records), pd.DataFrame(cells), {})


def verdict(results):
    return judge_study(STUDY, results)[CLAIM]


def test_supported():
    v = verdict(synthetic(2.0))
    assert v.verdict == "supported", v.reason
    rows = {r.name: r for r in v.rows}
    assert rows["log_eig_gap_deep"].estimate == pytest.approx(2.0, abs=0.15)
    assert rows["log_trace_gap_deep"].estimate == pytest.approx(3.0, abs=0.15)
    assert rows["log_eig_gap_shallow"].estimate == pytest.approx(0.0, abs=0.15)
    assert not rows["log_eig_gap_shallow"].primary


def test_refuted():
    v = verdict(synthetic(0.0))
    assert v.verdict == "refuted", v.reason


def test_seeds_whose_nets_did_not_train_are_dropped():
    """Seeds 8 and 9 have a deep residual net below 50 % whose gap is −5 (collapsed): dropped,
    the verdict stands on the 8 others, and the check is the fraction kept, 8/10."""
    results = synthetic(2.0, seeds=10, untrained={(20, True, "none", 8), (20, True, "batch", 9)})
    rec = results.records
    collapsed = (
        (rec["depth"] == 20) & rec["residual"] & (rec["seed"] >= 8) & (rec["norm"] == "none")
    )
    results = Results(rec.assign(value=rec["value"].where(~collapsed, 1e-3)), results.cells, {})
    v = verdict(results)
    assert v.verdict == "supported", v.reason
    assert {r.n_seeds for r in v.rows if r.primary} == {8}
    assert [(c.name, value) for c, value, _ in v.checks] == [("deep_trained", 0.8)]
    # The detail's train-mode and plain-net ratios are over the same kept seeds: the collapsed
    # nets' near-zero Hessians (log gap ≈ −7) are not in them.
    detail = {r.name: r.detail for r in v.rows}["log_eig_gap_deep"]
    ratios = dict(part.rsplit(" ×", 1) for part in detail.split("; ") if " ×" in part)
    assert np.log(float(ratios["train mode"])) == pytest.approx(2.0 + TRAIN_SHIFT, abs=0.15)
    assert np.log(float(ratios["plain depth 20"])) == pytest.approx(-5.0, abs=0.15)


def test_too_few_trained_seeds_is_not_testable():
    untrained = {(20, True, "none", 0), (20, True, "none", 1)}
    v = verdict(synthetic(2.0, seeds=6, untrained=untrained))
    assert v.verdict == "not testable at this scale"
    assert [value for _, value, _ in v.checks] == [pytest.approx(4 / 6)]


def test_three_seeds():
    """Three seeds whose nets all trained: the check (fraction of seeds kept) passes, and the
    rows are underpowered (n = 3 < 5)."""
    v = verdict(synthetic(2.0, seeds=3))
    assert v.verdict == "inconclusive" and v.note == "underpowered"
    assert all(r.note.startswith("underpowered") for r in v.rows)
