"""Smoke runs of the ghost_batch, example_weighing and gamma_beta_decay studies through the CLI
on tiny grids: the claims get verdicts, the figures are drawn, and the stored numbers agree with
what they must equal (w = 0 is the standard evaluation; the decay arms differ only in γ/β)."""

import numpy as np
import pandas as pd
import pytest

from normtheory.cli import main
from normtheory.study import Results
from studies.example_weighing import MULTIPLES, weighing_table
from studies.gamma_beta_decay import ORDER as DECAY_ORDER
from studies.ghost_batch import ORDER as GHOST_ORDER
from studies.ghost_batch import outcomes

ALLOWED = {"supported", "refuted", "inconclusive", "not run"}

pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_ghost_batch(tmp_path):
    out, claims = _run("ghost_batch", tmp_path, "batch_size=16", "examples=96", "width=4")
    assert list(claims["claim"]) == ["GHOST-REG", "GHOST-REG"]
    assert set(claims["verdict"]) <= ALLOWED
    assert all(f"{t}:" in claims["detail"].iloc[0] for t in GHOST_ORDER)
    _figures(tmp_path, ["accuracy"])
    table = outcomes(Results.load(out))
    assert len(table) == len(GHOST_ORDER) * 2 and set(table["tag"]) == set(GHOST_ORDER)
    assert np.isfinite(table[["gap", "train_set_loss"]]).all().all()
    assert table["train_set_acc"].between(0, 1).all()


def test_example_weighing(tmp_path):
    out, claims = _run("example_weighing", tmp_path, "batch_size=4,8", "examples=96", "width=4")
    assert list(claims["claim"]) == ["EX-WEIGH"] * 3
    assert set(claims["verdict"]) <= ALLOWED
    _figures(tmp_path, ["weighing"])
    results = Results.load(out)
    table = weighing_table(results)
    assert len(table) == 2 * 2 * len(MULTIPLES) * 4  # batch × seed × w × metric
    assert (table["w"] <= 1).all() and table["w"].min() == 0
    # w = 0 is the standard eval-mode evaluation the training loop ended with.
    acc0 = table[(table["metric"] == "test_acc") & (table["multiple"] == 0)]
    final = results.cells.set_index(["batch_size", "seed"])["final_test_acc"]
    assert acc0.set_index(["batch_size", "seed"])["value"].sort_index().to_numpy() == (
        pytest.approx(final.sort_index().to_numpy())
    )
    gaps = table[table["metric"] == "output_gap"]["value"]
    assert (gaps >= 0).all() and np.isfinite(gaps).all()


def test_gamma_beta_decay(tmp_path):
    out, claims = _run("gamma_beta_decay", tmp_path, "batch_size=8,16", "examples=64", "width=4")
    assert list(claims["claim"]) == ["GAMMA-WD", "GAMMA-WD"]
    assert [s.split(":")[0] for s in claims["statistic"]] == ["B = 8", "B = 16"]
    assert set(claims["verdict"]) <= ALLOWED
    _figures(tmp_path, ["accuracy"])
    cells = Results.load(out).cells
    assert set(cells["tag"]) == set(DECAY_ORDER) and len(cells) == 4 * 2 * 2
    # The arms share seed and data, so they differ only through γ/β decay, which acts once γ, β
    # have left (1, 0): a few steps in, the decayed arm's loss differs, though only slightly.
    assert set(cells["status"]) == {"completed"}
    wide = cells.pivot_table(index=["batch_size", "seed"], columns="tag", values="final_test_loss")
    diff = (wide[DECAY_ORDER[0]] - wide[DECAY_ORDER[3]]).abs()
    assert diff.max() > 0 and diff.max() < 0.05
