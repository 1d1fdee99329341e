"""The micro_batch study: a smoke run through the CLI on a tiny grid, and known-answer tests of
FRN-LARGE, BRN-SMALL and BKN-MICRO on synthetic test errors."""

import numpy as np
import pandas as pd
import pytest
from study_cases import error_cells

from normtheory.analysis import final_outcomes, schemes
from normtheory.evidence import CheckValue
from normtheory.results import Results
from normtheory.verdicts import judge_study
from studies.micro_batch import STUDY, statistics

pytestmark = pytest.mark.usefixtures("one_thread")

CLAIMS = ("FRN-LARGE", "BRN-SMALL", "BKN-MICRO")


def test_smoke(study_cli):
    out, rows = study_cli.run(
        "micro_batch", "batch_size=2,16", "epochs=1", "max_train=32", "width=4"
    )
    reported = set(zip(rows["claim"], rows["name"], rows["condition"]))
    assert {("FRN-LARGE", "frn_vs_bn_large", ""), ("BRN-SMALL", "brn_short_large", ""),
            ("BRN-SMALL", "brn_rise", ""), ("BKN-MICRO", "bkn_vs_bn", "2"),
            ("BKN-MICRO", "bkn_vs_brn", "2"), ("BKN-MICRO", "bkn_micro_vs_bn_large", "")} <= reported  # fmt: skip
    assert (rows["n_seeds"] == 2).all() and np.isfinite(rows["estimate"]).all()
    assert rows["detail"].str.contains("test error").all()
    study_cli.figures(["error_vs_batch", "gap_to_bn", "convergence"])
    cells = final_outcomes(Results.load(out).cells)
    ran = set(zip(schemes(cells)["norm"], cells["batch_size"]))
    assert ran == {("batch", 2), ("batch_renorm", 2), ("batch_kalman", 2), ("batch", 16),
                       ("batch_renorm", 16), ("frn", 16)}  # fmt: skip
    assert set(cells["status"]) == {"completed"} and cells["test_error"].between(0, 1).all()
    assert (cells["steps_done"] == 32 // cells["batch_size"]).all()  # one epoch at every size
    brn = cells[cells["norm"] == "batch_renorm"]
    assert (brn["renorm_steps"] == brn["steps_done"] // 2).all()  # warm-up in the first half


def test_grids_hold_the_cells_the_claims_compare():
    quick = {(("bnp" if c.bn_precondition else c.norm), c.batch_size)
             for c in STUDY.profile("quick").grid.cells()}  # fmt: skip
    assert quick == {("batch", 2), ("batch_renorm", 2), ("batch_kalman", 2), ("batch", 32),
                     ("batch_renorm", 32), ("frn", 32)}  # fmt: skip
    standard = STUDY.profile("standard").grid.cells()
    assert {c.dataset for c in standard} == {"fashion_mnist"} and {c.epochs for c in standard} == {
        10
    }
    assert {c.schedule for c in standard} == {"warmup_cosine"} and {c.lr for c in standard} == {0.1}
    paper = STUDY.profile("paper").grid.cells()
    names = {("bnp" if c.bn_precondition else c.norm) for c in paper}
    assert names == {"batch", "group", "group+ws", "frn", "batch_renorm", "batch_kalman", "bnp"}
    assert {c.dataset for c in paper} == {"cifar10"}


# Mean test error per (scheme, batch size) of a world where every claim holds: BN's error rises
# by 10 points from 32 to 2; BKN at 2 beats BN and Batch Renorm and is as good as BN at 32;
# Batch Renorm degrades at small batches; FRN matches BN at 32.
HOLDS = {
    ("batch", 2): 0.15, ("batch", 32): 0.05,
    ("batch_renorm", 2): 0.12, ("batch_renorm", 32): 0.05,
    ("batch_kalman", 2): 0.05,
    ("frn", 32): 0.05,
}  # fmt: skip


def _results(errors: dict, seeds: int = 5, noise: float = 0.004) -> Results:
    return Results(pd.DataFrame(), pd.DataFrame(error_cells(errors, seeds, noise)), {})


def _verdicts(errors: dict, **kw):
    return judge_study(STUDY, _results(errors, **kw))


def test_statistics_by_hand():
    items = statistics(_results(HOLDS, noise=0))
    rows = {(i.claim, i.name, i.condition): i for i in items if not isinstance(i, CheckValue)}
    assert set(rows) == {
        ("FRN-LARGE", "frn_vs_bn_large", ""), ("FRN-LARGE", "frn_gain_large", ""),
        ("BRN-SMALL", "brn_short_large", ""), ("BRN-SMALL", "brn_rise", ""),
        ("BKN-MICRO", "bkn_vs_bn", "2"), ("BKN-MICRO", "bkn_vs_brn", "2"),
        ("BKN-MICRO", "bkn_micro_vs_bn_large", ""),
    }  # fmt: skip
    expected = {"brn_rise": 0.07, "bkn_vs_bn": 0.10, "bkn_vs_brn": 0.07, "brn_short_large": 0.0}
    for (_, name, _), item in rows.items():
        assert list(item.values) == pytest.approx([expected.get(name, 0.0)] * 5), name
    checks = {(i.claim, i.name): i.value for i in items if isinstance(i, CheckValue)}
    assert checks[("BKN-MICRO", "bn_penalty")] == pytest.approx(0.10)
    assert checks[("FRN-LARGE", "bn_trained")] == pytest.approx(0.95)
    assert checks[("FRN-LARGE", "frn_trained")] == pytest.approx(0.95)


def test_verdicts_supported():
    verdicts = _verdicts(HOLDS)
    assert {c: verdicts[c].verdict for c in CLAIMS} == dict.fromkeys(CLAIMS, "supported")


def test_brn_small_is_refuted_only_when_both_rows_are():
    """Rule any: Batch Renorm as good as BN at 32 and flat down to 2 refutes the claim; falling
    short at 32 alone supports it (seed noise ±0.1 point: small enough to rule out ½ point)."""
    flat = {**HOLDS, ("batch_renorm", 2): 0.05}
    assert _verdicts(flat, noise=0.001)["BRN-SMALL"].verdict == "refuted"
    short = {**flat, ("batch_renorm", 32): 0.08, ("batch_renorm", 2): 0.08}
    assert _verdicts(short)["BRN-SMALL"].verdict == "supported"


def test_frn_large_non_inferiority():
    assert _verdicts({**HOLDS, ("frn", 32): 0.055})["FRN-LARGE"].verdict == "supported"
    assert _verdicts({**HOLDS, ("frn", 32): 0.09})["FRN-LARGE"].verdict == "refuted"


def test_bkn_micro_refuted_by_a_loss_to_batch_renorm_and_untestable_without_a_bn_penalty():
    assert _verdicts({**HOLDS, ("batch_kalman", 2): 0.14})["BKN-MICRO"].verdict == "refuted"
    flat_bn = {**HOLDS, ("batch", 2): 0.06}
    verdict = _verdicts(flat_bn)["BKN-MICRO"]
    assert verdict.verdict == "not testable at this scale"
    assert [c.name for c, _, passed in verdict.checks if not passed] == ["bn_penalty"]


def test_bnp_cells_count_as_their_own_scheme():
    cells = pd.DataFrame(error_cells({("none", 2): 0.1, ("batch", 2): 0.2}, seeds=2, noise=0))
    cells["bn_precondition"] = cells["norm"] == "none"
    assert set(schemes(cells)["norm"]) == {"bnp", "batch"}
