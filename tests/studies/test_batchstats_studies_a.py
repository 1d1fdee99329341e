"""Smoke runs of the ghost_batch, example_weighing and gamma_beta_decay studies through the CLI
on tiny grids: the claims get verdicts, the figures are drawn, and the stored numbers agree with
what they must equal (w = 0 is the standard evaluation; the decay arms differ only in γ/β)."""

import numpy as np
import pytest

from normtheory.study import Results
from studies.example_weighing import MULTIPLES, weighing_table
from studies.gamma_beta_decay import ORDER as DECAY_ORDER
from studies.ghost_batch import ORDER as GHOST_ORDER
from studies.ghost_batch import outcomes

ALLOWED = {"supported", "refuted", "inconclusive", "not run"}

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ghost_batch(study_cli):
    out, claims = study_cli.run("ghost_batch", "batch_size=16", "examples=96", "width=4")
    assert list(claims["claim"]) == ["GHOST-REG", "GHOST-REG"]
    assert set(claims["verdict"]) <= ALLOWED
    assert all(f"{t}:" in claims["detail"].iloc[0] for t in GHOST_ORDER)
    study_cli.figures(["accuracy"])
    table = outcomes(Results.load(out))
    assert len(table) == len(GHOST_ORDER) * 2 and set(table["tag"]) == set(GHOST_ORDER)
    assert np.isfinite(table[["gap", "train_set_loss"]]).all().all()
    assert table["train_set_acc"].between(0, 1).all()


def test_example_weighing(study_cli):
    out, claims = study_cli.run("example_weighing", "batch_size=4,8", "examples=96", "width=4")
    assert list(claims["claim"]) == ["EX-WEIGH"] * 3
    assert set(claims["verdict"]) <= ALLOWED
    study_cli.figures(["weighing"])
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


def test_gamma_beta_decay(study_cli):
    out, claims = study_cli.run("gamma_beta_decay", "batch_size=8,16", "examples=64", "width=4")
    assert list(claims["claim"]) == ["GAMMA-WD", "GAMMA-WD"]
    assert [s.split(":")[0] for s in claims["statistic"]] == ["B = 8", "B = 16"]
    assert set(claims["verdict"]) <= ALLOWED
    study_cli.figures(["accuracy"])
    cells = Results.load(out).cells
    assert set(cells["tag"]) == set(DECAY_ORDER) and len(cells) == 4 * 2 * 2
    # The arms share seed and data, so they differ only through γ/β decay, which acts once γ, β
    # have left (1, 0): a few steps in, the decayed arm's loss differs, though only slightly.
    assert set(cells["status"]) == {"completed"}
    wide = cells.pivot_table(index=["batch_size", "seed"], columns="tag", values="final_test_loss")
    diff = (wide[DECAY_ORDER[0]] - wide[DECAY_ORDER[3]]).abs()
    assert diff.max() > 0 and diff.max() < 0.05
