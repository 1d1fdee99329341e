"""Smoke runs of the weight-geometry studies through the CLI on small grids: the exact claims
hold, the figures are drawn, and the tables behind them carry the theory values."""

import pandas as pd
import pytest

from normtheory.cli import main
from normtheory.study import Results, load_study
from studies.orthogonal_noise import orth_table


def _run(study, tmp_path, *overrides, seeds="2"):
    out = tmp_path / "run"
    argv = ["run", study, "--seeds", seeds, "--device", "cpu", "--out", str(out), *overrides]
    assert main(argv) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    claims = pd.read_csv(tmp_path / "rep" / "results" / "claims.csv")
    return out, claims[claims["run"] == "run"]  # the table also lists the claims no run tested


def _figures(tmp_path, names):
    for name in names:
        png = tmp_path / "rep" / "figures" / f"run-{name}.png"
        assert png.exists() and png.stat().st_size > 10_000, name


def test_orthogonal_noise(tmp_path):
    out, claims = _run("orthogonal_noise", tmp_path, "steps=40")
    rows = {(r.claim, r.statistic.split(":")[0]): r for r in claims.itertuples()}
    assert rows["SPAN-ORTH", "SGD & SGD+momentum"].verdict == "exact-holds"
    assert rows["SPAN-ORTH", "SGD+WD"].verdict == "exact-holds"
    assert rows["SPAN-ORTH", "Adam, random 8-dim subspace"].verdict == "supported"
    assert {"WRS"} <= set(claims["claim"])
    _figures(tmp_path, ["orthogonal_component", "drift", "accuracy"])
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


def test_scale_invariance(tmp_path):
    _, claims = _run("scale_invariance", tmp_path, "steps=30", "width=8")
    verdicts = dict(zip(claims["claim"], claims["verdict"]))
    assert verdicts == {"SI-ORTH": "exact-holds", "SI-GROWTH": "exact-holds"}
    detail = claims.set_index("claim").loc["SI-ORTH", "detail"]
    assert "per row" in detail
    _figures(tmp_path, ["growth", "identities"])


def test_dropout_independence(tmp_path):
    out, claims = _run("dropout_independence", tmp_path, "steps=30", "width=32", seeds="3")
    verdicts = dict(zip(claims["claim"], claims["verdict"]))
    assert verdicts == {"IC-CORR": "supported", "IC-MI": "supported"}
    _figures(tmp_path, ["ratios"])
    from studies.dropout_independence import ratio_table

    table = ratio_table(Results.load(out))
    bn = table[(table["block"] == "BN→Dropout") & (table["which"] == "corr")]
    assert bn["ratio"].to_numpy() == pytest.approx(bn["theory"].to_numpy(), abs=0.02)


def test_ic_layer(tmp_path):
    out, claims = _run("ic_layer", tmp_path, "steps=20", "width=8", "eval_every=10", seeds="2")
    rows = claims.set_index("statistic")
    sign = claims[claims["claim"] == "IC-SIGN"].iloc[0]
    assert sign["verdict"] == "exact-holds"
    assert (claims["claim"] == "IC-ORDER").sum() == 2
    assert set(rows["verdict"]) <= {"supported", "refuted", "inconclusive", "exact-holds"}
    _figures(tmp_path, ["training", "dependence"])
    from studies.ic_layer import per_run

    runs = per_run(Results.load(out))
    assert len(runs) == 6 and runs["train_auc"].notna().all()
