"""The gamma_beta_decay study: a smoke run through the CLI on a tiny grid (the decay arms differ
only in γ/β), and its GAMMA-WD verdicts on synthetic results with known answers."""

import numpy as np
import pandas as pd
import pytest

from normtheory.results import Results
from normtheory.verdicts import judge_study
from studies.gamma_beta_decay import BOTH, NONE, ORDER, STUDY, statistics

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = (8, 32, 128)


def test_gamma_beta_decay(study_cli):
    out, rows = study_cli.run("gamma_beta_decay", "batch_size=8,16", "examples=64", "width=4")
    assert set(rows["claim"]) == {"GAMMA-WD"} and set(rows["name"]) == {"acc_change"}
    assert sorted(rows["condition"].astype(int)) == [8, 16]
    assert (rows["n_seeds"] == 2).all() and np.isfinite(rows["estimate"]).all()
    study_cli.figures(["accuracy", "accuracy_change"])
    cells = Results.load(out).cells
    assert set(cells["tag"]) == set(ORDER) and len(cells) == 4 * 2 * 2
    # The arms share seed and data, so they differ only through γ/β decay, which acts once γ, β
    # have left (1, 0): a few steps in, the decayed arm's loss differs, though only slightly.
    assert set(cells["status"]) == {"completed"}
    wide = cells.pivot_table(index=["batch_size", "seed"], columns="tag", values="final_test_loss")
    diff = (wide[NONE] - wide[BOTH]).abs()
    assert diff.max() > 0 and diff.max() < 0.05


def _results(changes, *, base=0.9, seeds=6) -> Results:
    """Cells of the four arms at batch 8, 32, 128: the "both" arm's test accuracy is the
    no-decay arm's + `changes[B]` plus seed noise; γ-only and β-only sit halfway."""
    rng = np.random.default_rng(2)
    rows = []
    for b in SIZES:
        for s in range(seeds):
            acc = base + rng.normal(0, 0.01)
            for tag in ORDER:
                share = {NONE: 0.0, BOTH: 1.0}.get(tag, 0.5)
                noise = rng.normal(0, 0.001) if tag != NONE else 0.0
                rows.append(
                    {
                        "cell": f"tag={tag},batch_size={b}",
                        "seed": s,
                        "status": "completed",
                        "tag": tag,
                        "batch_size": b,
                        "final_test_acc": acc + share * changes.get(b, 0.0) + noise,
                    }
                )
    return Results(pd.DataFrame(), pd.DataFrame(rows), {})


def test_gamma_beta_decay_verdicts_on_known_answers():
    """A change at one batch size, either way → supported (rule any, two-sided); no change at
    any batch size (within ±SESOI) → refuted; no-decay nets untrained → not testable; 3 seeds →
    underpowered."""
    up = judge_study(STUDY, _results({32: 0.03}))["GAMMA-WD"]
    assert up.verdict == "supported" and up.headline.condition == "32"
    rows = {r.condition: r for r in up.rows}
    assert set(rows) == {"8", "32", "128"} and {r.n_seeds for r in rows.values()} == {6}
    assert rows["32"].estimate == pytest.approx(0.03, abs=0.002)
    down = judge_study(STUDY, _results({128: -0.03}))["GAMMA-WD"]
    assert down.verdict == "supported" and down.headline.condition == "128"
    assert judge_study(STUDY, _results({}))["GAMMA-WD"].verdict == "refuted"
    # The check reads the no-decay arm alone, not the (here trained) decay arms.
    untrained = judge_study(STUDY, _results({8: 0.1, 32: 0.1, 128: 0.1}, base=0.8))["GAMMA-WD"]
    assert untrained.verdict == "not testable at this scale"
    few = judge_study(STUDY, _results({32: 0.03}, seeds=3))["GAMMA-WD"]
    assert (few.verdict, few.note) == ("inconclusive", "underpowered")


def test_diverged_run_counts_as_accuracy_zero_failed_is_missing():
    """The one final-metric policy (`normtheory.analysis.FINAL_METRIC_POLICY`): a diverged arm
    did not train (accuracy 0; before issue 14 this study left it out); a failed run has no
    outcome and leaves its pair; the check counts the diverged no-decay run as 0."""
    results = _results({})
    cells = results.cells
    at_8 = cells["batch_size"] == 8
    both, none = at_8 & (cells["tag"] == BOTH), at_8 & (cells["tag"] == NONE)
    acc_none = cells[none].set_index("seed")["final_test_acc"]
    cells.loc[both & (cells["seed"] == 1), ["status", "final_test_acc"]] = ["diverged", np.nan]
    cells.loc[both & (cells["seed"] == 2), ["status", "final_test_acc"]] = ["failed", np.nan]
    cells.loc[none & (cells["seed"] == 3), ["status", "final_test_acc"]] = ["diverged", np.nan]
    items = {(i.name, getattr(i, "condition", "")): i for i in statistics(results)}
    change = items["acc_change", "8"].values
    assert list(change.index) == [0, 1, 3, 4, 5]
    assert change[1] == pytest.approx(0.0 - acc_none[1])
    assert change[3] > 0.8  # the no-decay run diverged: the decayed one is 0.9 better
    expected = (cells.loc[cells["tag"] == NONE, "final_test_acc"].fillna(0.0)).mean()
    assert items["baseline_trained", ""].value == pytest.approx(expected)
