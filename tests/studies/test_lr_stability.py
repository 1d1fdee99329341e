"""The lr_stability study: a smoke run through the CLI on a tiny grid, and known-answer tests of
the BN-LR verdict on synthetic LR sweeps whose largest stable learning rates are set."""

import math

import numpy as np
import pandas as pd
import pytest

from normtheory.results import Results, load
from normtheory.verdicts import judge_study
from studies.lr_stability import LRS, STUDY, lr_resolution, max_stable_lr

pytestmark = pytest.mark.usefixtures("one_thread")

CLAIM = "BN-LR"
STEP = math.log10(LRS[1] / LRS[0])


def test_smoke(study_cli):
    out, rows = study_cli.run("lr_stability", "steps=10", "width=4", "depth=2", "lr=0.01,1.0,100.0")
    assert list(rows["name"]) == ["log10_lr_ratio"]
    claims = study_cli.claims().set_index("claim")
    assert claims.loc[CLAIM, "verdict"] in {"inconclusive", "not testable at this scale"}
    study_cli.figures(["stability"])
    records, cells = load(out), Results.load(out).cells
    assert set(cells["status"]) <= {"completed", "diverged"}
    assert lr_resolution(cells) == pytest.approx(2.0)
    for metric in ("one_step.relative_change", "outcome.test_loss"):
        values = records.loc[records["metric"] == metric, "value"]
        assert len(values) and values.notna().all(), metric


def synthetic(limits, *, seeds=5):
    """Cells of the quick grid (3 norms × `LRS`) where norm n is stable up to grid index
    limits[n][seed] (an int for every seed; None: stable everywhere). Past its limit a run
    alternately diverges (NaN loss) and ends above chance, as real unstable runs do."""
    cells = []
    for norm, limit in limits.items():
        for seed in range(seeds):
            top = limit[seed] if isinstance(limit, (list, tuple)) else limit
            top = len(LRS) - 1 if top is None else top
            for i, lr in enumerate(LRS):
                stable = i <= top
                status = "completed" if stable or i % 2 else "diverged"
                loss = 0.3 if stable else (5.0 if status == "completed" else np.nan)
                cells.append(
                    dict(cell=f"norm={norm},lr={lr}", seed=seed, norm=norm, lr=lr, status=status,
                         final_test_loss=loss, final_test_acc=0.9 if stable else 0.1)
                )  # fmt: skip
    return Results(pd.DataFrame(columns=["metric"]), pd.DataFrame(cells), {})


def verdict(results):
    return judge_study(STUDY, results)[CLAIM]


def test_grid_readout():
    results = synthetic({"batch": 6, "group": [5, 5, 4, 5, 5], "none": 2})
    table = max_stable_lr(results.cells)
    assert table.loc[2, "group"] == LRS[4] and (table["batch"] == LRS[6]).all()
    assert lr_resolution(results.cells) == pytest.approx(STEP, rel=1e-2)


def test_supported():
    """Every seed at the same grid ratio (4 steps): the interval comes from the grid's
    resolution, never zero width."""
    v = verdict(synthetic({"batch": 6, "group": 5, "none": 2}))
    assert v.verdict == "supported", v.reason
    row = v.headline
    assert row.estimate == pytest.approx(math.log10(LRS[6] / LRS[2]))
    assert row.ci_low < row.estimate < row.ci_high
    assert (row.n_seeds, [value for _, value, _ in v.checks]) == (5, [1.0])


def test_refuted():
    v = verdict(synthetic({"batch": [3, 3, 2, 3, 3], "group": 3, "none": 3}))
    assert v.verdict == "refuted", v.reason


def test_no_bn_stable_on_the_whole_grid_is_not_testable():
    v = verdict(synthetic({"batch": 6, "group": 5, "none": [2, 2, 2, 2, None]}))
    assert v.verdict == "not testable at this scale"
    assert [value for _, value, _ in v.checks] == [pytest.approx(0.8)]


def test_three_seeds_underpowered():
    v = verdict(synthetic({"batch": 6, "group": 5, "none": 2}, seeds=3))
    assert (v.verdict, v.note) == ("inconclusive", "underpowered")
