"""The ghost_batch study: a smoke run through the CLI on a tiny grid, and its GHOST-REG verdicts
on synthetic results with known answers."""

import numpy as np
import pandas as pd
import pytest

from normtheory.results import Results
from normtheory.verdicts import judge_study
from studies.ghost_batch import (
    MAIN,
    ORDER,
    STUDY,
    TRAINSET_ACC,
    TRAINSET_LOSS,
    outcomes,
    statistics,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = (32, 128)


def test_ghost_batch(study_cli):
    out, rows = study_cli.run("ghost_batch", "batch_size=16", "examples=96", "width=4")
    assert set(rows["claim"]) == {"GHOST-REG"}
    conditions = rows.set_index("name")["condition"]  # read back as text, "" for none
    assert sorted(conditions.index) == ["acc_gain", "gap_reduction"]
    assert conditions["acc_gain"] == "16" and conditions["gap_reduction"] == ""
    assert (rows["n_seeds"] == 2).all() and np.isfinite(rows["estimate"]).all()
    acc_row = rows[rows["name"] == "acc_gain"].iloc[0]
    assert all(f"{t}:" in acc_row["detail"] for t in ORDER)
    claim = study_cli.claims().set_index("claim").loc["GHOST-REG"]
    assert claim["verdict"] in {"inconclusive", "not testable at this scale"}  # 2 seeds, tiny nets
    study_cli.figures(["accuracy", "generalization_gap"])
    table = outcomes(Results.load(out))
    assert len(table) == len(ORDER) * 2 and set(table["tag"]) == set(ORDER)
    assert np.isfinite(table[["gap", "train_set_loss"]]).all().all()
    assert table["train_set_acc"].between(0, 1).all()


def _results(gain, *, gap_cut=0.02, bn_acc=0.9, seeds=6) -> Results:
    """Results of every tag at batch 32 and 128: Ghost BN 16's test accuracy is BN's + `gain`
    (a number, or one per batch size) and its gap (test − training-set loss) BN's − `gap_cut`,
    plus seed noise; the other ghost sizes sit halfway."""
    rng = np.random.default_rng(0)
    gains = dict(zip(SIZES, np.broadcast_to(gain, len(SIZES))))
    cells, records = [], []
    for b in SIZES:
        for s in range(seeds):
            acc, gap = bn_acc + rng.normal(0, 0.01), 0.2 + rng.normal(0, 0.02)
            for tag in ORDER:
                share = {"BN": 0.0, MAIN: 1.0}.get(tag, 0.5)
                noise = rng.normal(0, 0.005, 2) * (tag != "BN")
                label = f"tag={tag},batch_size={b}"
                train_loss = 0.05
                test_loss = train_loss + gap - share * gap_cut + noise[1]
                cells.append(
                    {
                        "cell": label,
                        "seed": s,
                        "status": "completed",
                        "tag": tag,
                        "batch_size": b,
                        "final_test_acc": acc + share * gains[b] + noise[0],
                        "final_test_loss": test_loss,
                    }
                )
                records += [
                    {"cell": label, "seed": s, "step": 99, "metric": m, "key": "", "value": v}
                    for m, v in ((TRAINSET_LOSS, train_loss), (TRAINSET_ACC, 0.99))
                ]
    return Results(pd.DataFrame(records), pd.DataFrame(cells), {})


def _rows(verdict, name):
    return {r.condition: r for r in verdict.rows if r.name == name}


def test_ghost_batch_verdicts_on_known_answers():
    """Ghost BN 16 better at every batch size → supported; worse → refuted; BN untrained → not
    testable; 3 seeds → underpowered. Each batch size is a row of its own (one value per seed),
    and the gap reduction is averaged over batch sizes within a seed."""
    good = judge_study(STUDY, _results(0.03))["GHOST-REG"]
    assert good.verdict == "supported"
    acc = _rows(good, "acc_gain")
    assert set(acc) == {"32", "128"} and all(r.n_seeds == 6 for r in acc.values())
    assert acc["32"].estimate == pytest.approx(0.03, abs=0.006)
    gap = _rows(good, "gap_reduction")[""]
    assert gap.n_seeds == 6 and gap.estimate == pytest.approx(0.02, abs=0.005)
    assert judge_study(STUDY, _results(-0.03))["GHOST-REG"].verdict == "refuted"
    # A reversal at one batch size is not averaged away by a gain at the other.
    mixed = judge_study(STUDY, _results([0.03, -0.03]))["GHOST-REG"]
    assert mixed.verdict == "refuted" and _rows(mixed, "acc_gain")["128"].note == "reversal"
    # The check is on BN alone: Ghost BN reaching 85 % does not make an untrained BN testable.
    untrained = judge_study(STUDY, _results(0.15, bn_acc=0.8))["GHOST-REG"]
    assert untrained.verdict == "not testable at this scale"
    few = judge_study(STUDY, _results(0.03, seeds=3))["GHOST-REG"]
    assert (few.verdict, few.note) == ("inconclusive", "underpowered")


def test_trainset_metrics_are_the_renamed_hook_constants():
    assert (TRAINSET_LOSS, TRAINSET_ACC) == ("trainset.data_loss", "trainset.data_acc")


def test_diverged_run_counts_as_accuracy_zero_failed_is_missing():
    """The one final-metric policy (`normtheory.analysis.FINAL_METRIC_POLICY`): a diverged run
    did not train (accuracy 0; before issue 14 this study left it out) and has no generalization
    gap; a failed run has no outcome and leaves its pair."""
    results = _results(0.03)
    cells = results.cells
    main_32 = (cells["tag"] == MAIN) & (cells["batch_size"] == 32)
    cells.loc[main_32 & (cells["seed"] == 1), ["status", "final_test_acc", "final_test_loss"]] = [
        "diverged", np.nan, np.nan
    ]  # fmt: skip
    cells.loc[main_32 & (cells["seed"] == 2), ["status", "final_test_acc"]] = ["failed", np.nan]
    rows = {(i.name, i.condition): i for i in statistics(results) if hasattr(i, "values")}
    gain = rows["acc_gain", "32"].values
    bn = cells[(cells["tag"] == "BN") & (cells["batch_size"] == 32)].set_index("seed")
    assert list(gain.index) == [0, 1, 3, 4, 5]
    assert gain[1] == pytest.approx(0.0 - bn.loc[1, "final_test_acc"])
    # the gap reduction averages the pairs a seed has: seed 1 keeps only batch 128
    gaps = outcomes(results).set_index(["tag", "batch_size", "seed"])["gap"]
    assert np.isnan(gaps[MAIN, 32, 1]) and (MAIN, 32, 2) not in gaps.index
    cut = rows["gap_reduction", ""].values
    assert cut.index.tolist() == list(range(6))
    assert cut[1] == pytest.approx(gaps["BN", 128, 1] - gaps[MAIN, 128, 1])
