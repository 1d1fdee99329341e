"""dropout_independence: a smoke run through the CLI on a tiny grid (IC-layer MLPs, one per q), and
the slope rows of IC-CORR and IC-MI on synthetic ratios whose answer is known.

IC-CORR and IC-MI are exact claims decided by the ``exact_checks`` study; this study reports only their
secondary statistic (the slope in a trained net), so a run of it alone leaves their claim-level
verdict "not run" and the smoke run reads the statistic rows instead of `study_cli.run`'s
claim-level gate."""

import numpy as np
import pandas as pd
import pytest

from normtheory.cli import main
from normtheory.evidence import Exact
from normtheory.results import Results
from normtheory.verdicts import judge, judge_study
from studies.dropout_independence import BLOCKS, KEEPS, RATIOS, STUDY, ratio_table

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dropout_independence(tmp_path):
    out, rep = tmp_path / "run", tmp_path / "rep"
    argv = ["run", "dropout_independence", "--seeds", "2", "--device", "cpu", "--out", str(out)]
    assert main([*argv, "steps=30", "width=32"]) == 0
    assert main(["report", str(out), "--out", str(rep)]) == 0
    rows = pd.read_csv(rep / "results" / "rows.csv", keep_default_na=False, na_values=["nan", ""])
    rows = rows.set_index("claim")
    assert sorted(rows.index) == ["IC-CORR", "IC-MI"] and set(rows["name"]) == {"slope"}
    assert rows.loc["IC-CORR", "estimate"] == pytest.approx(1.0, abs=0.05)
    assert rows.loc["IC-MI", "estimate"] == pytest.approx(2.0, abs=0.1)
    assert (rows["n_seeds"] == 2).all() and not rows["primary"].any()
    claims = pd.read_csv(rep / "results" / "claims.csv", keep_default_na=False)
    assert set(claims[claims["claim"].isin(STUDY.claims)]["verdict"]) == {
        "not run"
    }  # exact_checks'
    for name in ["ratios"]:
        png = rep / "figures" / f"run-{name}.png"
        assert png.exists() and png.stat().st_size > 10_000, name
    table = ratio_table(Results.load(out))
    assert sorted(table["q"].unique()) == sorted(KEEPS) and set(table["block"]) == set(BLOCKS)
    for block, which in (("IC, β removed", "corr"), ("IC: BN→Dropout", "mi")):
        sub = table[(table["block"] == block) & (table["which"] == which)]
        assert sub["ratio"].to_numpy() == pytest.approx(sub["theory"].to_numpy(), abs=0.03)
    control = table[(table["block"] == "ReLU→Dropout, no BN") & (table["which"] == "corr")]
    assert (control["ratio"] < control["q"] - 0.02).all()  # a large mean: below q
    records = Results.load(out).records
    beta = records[(records["metric"] == "ic.mean_over_std") & (records["key"] == BLOCKS[0])]
    assert len(beta) == 8 and (beta["value"] > 0).all()  # BN's learned β is there, and reported


def _fake(seeds: int = 5, corr: float = 1.0, mi: float = 2.0, widths=(64,)) -> Results:
    """One cell per q (and width): ratios q^corr (correlation) and q^mi (MI) in the IC block,
    with seed noise of sd 0.005 on the exponent; the other blocks scale as q^1.2 and q^2.3."""
    rng = np.random.default_rng(1)
    rows = []
    for seed in range(seeds):
        for width in widths:
            for q in KEEPS:
                for block in BLOCKS:
                    for which, power in (("corr", corr), ("mi", mi)):
                        if block != BLOCKS[0]:
                            power = 1.2 if which == "corr" else 2.3
                        rows.append(
                            dict(
                                cell=f"dropout_keep={q},width={width}",
                                seed=seed,
                                width=width,
                                step=30,
                                metric=RATIOS[which],
                                key=f"{block}|{q}",
                                value=q ** (power + rng.normal(0, 0.005)),
                            )
                        )
    return Results(pd.DataFrame(rows), pd.DataFrame(), {})


@pytest.mark.parametrize("claim, which", [("IC-CORR", "corr"), ("IC-MI", "mi")])
def test_slope_rows_on_known_ratios(claim, which):
    """Ratios that follow q (q²) → the slope row is supported; a slope 20 % off → refuted; 3 seeds
    → underpowered. The claim itself stays "not run" until the exact_checks row is added, which
    then decides it alone."""
    right = {"corr": 1.0, "mi": 2.0}[which]

    def slope_row(results):
        verdict = judge_study(STUDY, results)[claim]
        (row,) = verdict.rows
        assert row.name == "slope" and not row.primary
        return verdict, row

    verdict, row = slope_row(_fake(**{which: right}))
    assert row.verdict == "supported" and row.estimate == pytest.approx(right, abs=0.01)
    assert (verdict.verdict, verdict.reason) == ("not run", "no exact check reported")
    _, row = slope_row(_fake(**{which: 1.2 * right}))
    assert row.verdict == "refuted"
    _, row = slope_row(_fake(seeds=3, **{which: right}))
    assert (row.verdict, row.note) == ("inconclusive", "underpowered: 3 < 5 seeds")
    _, row = slope_row(_fake(widths=(64, 128), **{which: right}))
    assert row.n_seeds == 5  # the widths of a seed are not extra seeds

    evidence = STUDY.statistics(_fake(**{which: 1.2 * right}))
    holds = judge([*evidence, Exact(claim, "ratio_error_se", 1.0, n=1)], [claim])[claim]
    assert holds.verdict == "exact-holds"
    fails = judge([*evidence, Exact(claim, "ratio_error_se", 9.0, n=1)], [claim])[claim]
    assert fails.verdict == "exact-fails"
