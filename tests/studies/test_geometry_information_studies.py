"""Smoke runs of the weight-geometry studies through the CLI on small grids: the exact claims
hold, the figures are drawn, and the tables behind them carry the theory values."""

import pytest

from normtheory.study import Results, load_study
from studies.orthogonal_noise import orth_table


def test_orthogonal_noise(study_cli):
    out, claims = study_cli.run("orthogonal_noise", "steps=40")
    rows = {(r.claim, r.statistic.split(":")[0]): r for r in claims.itertuples()}
    assert rows["SPAN-ORTH", "SGD & SGD+momentum"].verdict == "exact-holds"
    assert rows["SPAN-ORTH", "SGD+WD"].verdict == "exact-holds"
    assert rows["SPAN-ORTH", "Adam, random 8-dim subspace"].verdict == "supported"
    assert {"WRS"} <= set(claims["claim"])
    study_cli.figures(["orthogonal_component", "drift", "accuracy"])
    study = load_study("orthogonal_noise")
    table = orth_table(Results.load(out))
    assert set(table["setup"]) == {
        "mlp · digits ×3 ch",
        "convnet · digits ×3 ch",
        "mlp · teacher rank 8",
    }
    wd = table[table["tag"] == "SGD+WD"]
    assert wd["ratio"].to_numpy() == pytest.approx(wd["theory"].to_numpy(), rel=1e-5)
    assert study.claims == ("SPAN-ORTH", "WRS")


def test_scale_invariance(study_cli):
    _, claims = study_cli.run("scale_invariance", "steps=30", "width=8")
    verdicts = dict(zip(claims["claim"], claims["verdict"]))
    assert verdicts == {"SI-ORTH": "exact-holds", "SI-GROWTH": "exact-holds"}
    detail = claims.set_index("claim").loc["SI-ORTH", "detail"]
    assert "per row" in detail
    study_cli.figures(["growth", "identities"])


def test_dropout_independence(study_cli):
    out, claims = study_cli.run("dropout_independence", "steps=30", "width=32", seeds="3")
    verdicts = dict(zip(claims["claim"], claims["verdict"]))
    assert verdicts == {"IC-CORR": "supported", "IC-MI": "supported"}
    study_cli.figures(["ratios"])
    from studies.dropout_independence import ratio_table

    table = ratio_table(Results.load(out))
    bn = table[(table["block"] == "BN→Dropout") & (table["which"] == "corr")]
    assert bn["ratio"].to_numpy() == pytest.approx(bn["theory"].to_numpy(), abs=0.02)


def test_ic_layer(study_cli):
    out, claims = study_cli.run("ic_layer", "steps=20", "width=8", "eval_every=10", seeds="2")
    rows = claims.set_index("statistic")
    sign = claims[claims["claim"] == "IC-SIGN"].iloc[0]
    assert sign["verdict"] == "exact-holds"
    assert (claims["claim"] == "IC-ORDER").sum() == 2
    assert set(rows["verdict"]) <= {"supported", "refuted", "inconclusive", "exact-holds"}
    study_cli.figures(["training", "dependence"])
    from studies.ic_layer import per_run

    runs = per_run(Results.load(out))
    assert len(runs) == 6 and runs["train_auc"].notna().all()
