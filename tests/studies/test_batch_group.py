"""The batch_group study: a smoke run through the CLI on a tiny grid, and known-answer tests of the
BGN-TINY verdict on synthetic test errors (per-batch-size rows, the pooled row, the BN check)."""

import numpy as np
import pandas as pd
import pytest
from study_cases import error_cells

from normtheory.analysis import final_outcomes
from normtheory.evidence import CheckValue
from normtheory.results import Results
from normtheory.verdicts import judge_study
from studies.batch_group import STUDY, statistics

pytestmark = pytest.mark.usefixtures("one_thread")


def test_smoke(study_cli):
    out, rows = study_cli.run(
        "batch_group", "batch_size=1,2", "epochs=1", "max_train=16", "width=4", "groups=2"
    )
    per_size = rows[rows["name"].isin(["vs_bn", "vs_gn"])]
    conditions = per_size["condition"].astype(float)  # "1" in the CSV, read back as a number
    assert sorted(zip(per_size["name"], conditions)) == [
        ("vs_bn", 1), ("vs_bn", 2), ("vs_gn", 1), ("vs_gn", 2)
    ]  # fmt: skip
    assert "vs_bn_pooled" in set(rows["name"]) and (rows["claim"] == "BGN-TINY").all()
    assert (rows["n_seeds"] == 2).all() and np.isfinite(rows["estimate"]).all()
    assert per_size["detail"].str.contains("mean test error").all()
    study_cli.figures(["error_vs_batch", "gap_to_bgn", "convergence"], absent=["lr_tuning"])
    cells = final_outcomes(Results.load(out).cells)
    assert len(cells) == 3 * 2 * 2 and set(cells["status"]) == {"completed"}
    assert (cells["steps_done"] == 16 // cells["batch_size"]).all()  # one epoch at every size
    assert cells["test_error"].between(0, 1).all()


# Mean test error per norm and batch size of a world where BGN beats BN and GN by ≥ 5 points at
# every batch size ≤ 8; batch 16 is outside the claim and only decides the check (BN trained).
SIZES = (1, 2, 4, 8, 16)
HOLDS = {
    **{("batch", b): e for b, e in zip(SIZES, (0.60, 0.30, 0.20, 0.12, 0.05))},
    **{("group", b): 0.12 for b in SIZES},
    **{("batch_group", b): 0.06 for b in SIZES},
}


def _results(errors: dict, seeds: int = 5, noise: float = 0.004) -> Results:
    """Cells with the given mean test error per (norm, batch size), plus seeded noise."""
    rows = error_cells(errors, seeds, noise)
    return Results(pd.DataFrame(), pd.DataFrame(rows), {})


def _verdict(errors: dict, **kw):
    return judge_study(STUDY, _results(errors, **kw))["BGN-TINY"]


def test_statistics_per_batch_size_pooled_and_check():
    items = statistics(_results(HOLDS, noise=0))
    rows = {(i.name, i.condition): i for i in items if not isinstance(i, CheckValue)}
    assert set(rows) == {
        *((n, str(b)) for n in ("vs_bn", "vs_gn") for b in (1, 2, 4, 8)),  # not 16: B ≤ 8 only
        ("vs_bn_pooled", ""),
    }
    for b, e in zip(SIZES[:4], (0.60, 0.30, 0.20, 0.12)):
        assert list(rows["vs_bn", str(b)].values) == pytest.approx([e - 0.06] * 5)
        assert list(rows["vs_gn", str(b)].values) == pytest.approx([0.06] * 5)
    # pooled within each seed over the batch sizes ≤ 8: one value per seed, not 4
    assert list(rows["vs_bn_pooled", ""].values) == pytest.approx([(0.54 + 0.24 + 0.14 + 0.06) / 4] * 5)  # fmt: skip
    (check,) = [i for i in items if isinstance(i, CheckValue)]
    assert check.name == "bn_trained" and check.value == pytest.approx(0.95)  # BN at batch 16


def test_check_uses_the_largest_batch_when_the_grid_stops_at_8():
    errors = {k: v for k, v in HOLDS.items() if k[1] <= 8}
    (check,) = [i for i in statistics(_results(errors, noise=0)) if isinstance(i, CheckValue)]
    assert check.value == pytest.approx(0.88)


def test_verdict_supported():
    verdict = _verdict(HOLDS)
    assert verdict.label == "supported"
    assert {(r.name, r.condition) for r in verdict.rows if r.verdict == "supported"} >= {
        (n, str(b)) for n in ("vs_bn", "vs_gn") for b in (1, 2, 4, 8)
    }


def test_verdict_refuted_by_a_reversal_at_one_batch_size():
    """BGN beats BN by 30+ points at batch 1–2 but loses by 8 points at batch 8: the pooled BN
    row still favours BGN, yet the claim (BGN better at every small batch size) is refuted."""
    errors = {**HOLDS, ("batch_group", 8): 0.20, ("group", 8): 0.25}
    verdict = _verdict(errors)
    assert verdict.verdict == "refuted"
    reversed_ = {(r.name, r.condition) for r in verdict.rows if r.note == "reversal"}
    assert reversed_ == {("vs_bn", "8")}
    pooled = next(r for r in verdict.rows if r.name == "vs_bn_pooled")
    assert pooled.verdict == "supported" and not pooled.primary


def test_verdict_not_testable_when_bn_is_not_trained():
    """BN at the largest batch at 70 % accuracy: no baseline to beat, whatever BGN does."""
    verdict = _verdict({**HOLDS, ("batch", 16): 0.30})
    assert verdict.verdict == "not testable at this scale"
    ((check, value, passed),) = verdict.checks
    assert check.name == "bn_trained" and value == pytest.approx(0.70, abs=0.01) and not passed


def test_verdict_underpowered_with_three_seeds():
    assert _verdict(HOLDS, seeds=3).label == "inconclusive (underpowered)"


def test_diverged_is_error_one_failed_is_missing():
    results = _results(HOLDS, noise=0)
    cells = results.cells
    bgn2 = (cells["norm"] == "batch_group") & (cells["batch_size"] == 2)
    cells.loc[bgn2 & (cells["seed"] == 1), "status"] = "diverged"
    cells.loc[bgn2 & (cells["seed"] == 2), ["status", "final_test_acc"]] = ["failed", np.nan]
    table = final_outcomes(results.cells).set_index(["norm", "batch_size", "seed"]).sort_index()
    bgn_at_2 = table.loc[("batch_group", 2), "test_error"].to_dict()  # seed 2 failed: left out
    assert bgn_at_2 == pytest.approx({0: 0.06, 1: 1.0, 3: 0.06, 4: 0.06})
    rows = {(i.name, i.condition): i for i in statistics(results) if not isinstance(i, CheckValue)}
    gap = rows["vs_bn", "2"].values
    assert list(gap.index) == [0, 1, 3, 4]  # the failed seed is missing, not a fake pair
    assert gap[1] == pytest.approx(0.30 - 1.0)


def test_a_tuning_run_decides_nothing():
    """Cells evaluated on the validation split (the `tune` profile) choose learning rates: the
    study reports no evidence from them."""
    results = _results(HOLDS)
    results.cells["validation"] = 0.2
    assert judge_study(STUDY, results) == {}
    tune = STUDY.profile("tune")
    assert tune.first_seed >= 100 > STUDY.profile("quick").seeds and tune.grid.adjust is None
    assert {c.validation for c in tune.grid.cells()} == {0.2}
