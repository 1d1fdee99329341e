"""The lr_stability study: a smoke run through the CLI on a tiny grid, and known-answer tests of
the BN-LR verdict on synthetic searches whose max stable learning rates are set."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from normtheory.results import Results, load
from normtheory.stability import max_stable_lr, probe_table
from normtheory.verdicts import judge_study
from studies.lr_stability import STUDY

pytestmark = pytest.mark.usefixtures("one_thread")

CLAIM = "BN-LR"
WIDTH = 2 / 64  # the final bracket of an unwidened search: 2 decades halved 6 times


def test_smoke(study_cli):
    out, rows = study_cli.run("lr_stability", "steps=10", "width=4", "depth=2")
    assert list(rows["name"]) == ["log10_lr_ratio"]
    claims = study_cli.claims().set_index("claim")
    assert claims.loc[CLAIM, "verdict"] in {"inconclusive", "not testable at this scale"}
    study_cli.figures(["stability"])
    records, cells = load(out), Results.load(out).cells
    assert set(cells["status"]) == {"completed"} and len(cells) == 4
    table = probe_table(records)
    assert (table.groupby(["norm", "seed"]).size() == cells["final_n_probes"].iloc[0]).all()
    assert table["lr"].gt(0).all() and set(table["stable"]) <= {True, False}
    # 10 steps train nothing: every probe is unstable, so no search is bracketed
    assert not table["stable"].any() and (cells["final_bracketed"] == 0).all()
    values = records.loc[records["metric"] == "one_step.relative_change", "value"]
    assert len(values) == 4 * 10 and values.notna().all()


def synthetic(limits, *, seeds=5, width=WIDTH, unbracketed=()):
    """Cells as `run_cell` stores them: norm n's search at seed s found max stable LR
    limits[n][s] (a number: every seed) with a final bracket `width` wide; the (norm, seed)
    pairs in `unbracketed` found no bracket (NaN)."""
    cells = []
    for norm, limit in limits.items():
        for seed in range(seeds):
            lr = limit[seed] if isinstance(limit, (list, tuple)) else limit
            ok = (norm, seed) not in unbracketed
            cells.append(
                dict(cell=f"norm={norm}", seed=seed, norm=norm, status="completed", steps=500,
                     final_max_stable_lr=lr if ok else np.nan,
                     final_bracket_width=width if ok else np.nan, final_bracketed=float(ok))
            )  # fmt: skip
    return Results(pd.DataFrame(columns=["metric"]), pd.DataFrame(cells), {})


def verdict(results):
    return judge_study(STUDY, results)[CLAIM]


def test_readout():
    results = synthetic({"batch": [3.0, 2.0, 4.0, 3.0, 3.0], "none": 0.3})
    table = max_stable_lr(results.cells)
    assert list(table.columns) == ["batch", "none"] and table.loc[1, "batch"] == 2.0


def test_supported_with_the_bisection_resolution():
    """Every seed at the same ratio (×10): the interval comes from the bisection's resolution,
    √2 × the final bracket width (two midpoint errors), never zero width."""
    v = verdict(synthetic({"batch": 3.0, "none": 0.3}))
    assert v.verdict == "supported", v.reason
    row = v.headline
    half = sps.t.ppf(0.975, 4) * math.sqrt(2) * WIDTH / math.sqrt(12) / math.sqrt(5)
    assert row.estimate == pytest.approx(1.0)
    assert (row.ci_low, row.ci_high) == pytest.approx((1.0 - half, 1.0 + half))
    assert (row.n_seeds, [value for _, value, _ in v.checks]) == (5, [1.0])


def test_refuted():
    v = verdict(synthetic({"batch": [0.3, 0.31, 0.29, 0.3, 0.3], "none": 0.3}))
    assert v.verdict == "refuted", v.reason


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_an_unbracketed_search_makes_it_not_testable(norm):
    """Both nets must be bracketed: an unbracketed BN search is as bad as a no-BN one."""
    v = verdict(synthetic({"batch": 3.0, "none": 0.3}, unbracketed=[(norm, 4)]))
    assert v.verdict == "not testable at this scale"
    assert [value for _, value, _ in v.checks] == [pytest.approx(0.9)]


def test_three_seeds_underpowered():
    v = verdict(synthetic({"batch": 3.0, "none": 0.3}, seeds=3))
    assert (v.verdict, v.note) == ("inconclusive", "underpowered")
