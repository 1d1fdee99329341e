"""The bn_preconditioning study: a smoke run through the CLI on a tiny grid, and known-answer tests
of BNP-BATCH (synthetic test errors) and BNP-HESS (synthetic Hessian records)."""

import math

import numpy as np
import pandas as pd
import pytest
from study_cases import error_cells

from normtheory.analysis import final_outcomes, schemes
from normtheory.evidence import CheckValue
from normtheory.hooks import LayerHessianBNP
from normtheory.results import Results
from normtheory.verdicts import judge_study
from studies.bn_preconditioning import STUDY, statistics

pytestmark = pytest.mark.usefixtures("one_thread")


def test_smoke(study_cli):
    out, rows = study_cli.run(
        "bn_preconditioning", "batch_size=1,16", "epochs=1", "max_train=32", "width=4"
    )
    reported = set(zip(rows["claim"], rows["name"]))
    assert {("BNP-BATCH", "bnp_vs_bn_online"), ("BNP-BATCH", "bnp_batch_flat"),
            ("BNP-HESS", "log_cond_gain"), ("BNP-HESS", "log_cond_gain_init"),
            ("BNP-HESS", "log_cond_vs_none"), ("BNP-HESS", "log_top_gain")} <= reported  # fmt: skip
    assert (rows["n_seeds"] == 2).all() and np.isfinite(rows["estimate"]).all()
    study_cli.figures(["error_vs_batch", "conditioning", "convergence"])
    results = Results.load(out)
    cells = schemes(final_outcomes(results.cells))
    assert set(zip(cells["norm"], cells["batch_size"])) == {
        ("bnp", 1), ("batch", 1), ("none", 16), ("bnp", 16), ("batch", 16)
    }  # fmt: skip
    null = results.records[results.records["metric"] == LayerHessianBNP.NULL]
    assert (null["value"] >= 5).all()  # the head has 10 × (4 + 1) parameters, ≥ 5 null


# A world where BNP-BATCH holds: BN at batch 1 is 10 points worse than BNP, which is flat.
HOLDS = {("bnp", 1): 0.05, ("bnp", 32): 0.05, ("batch", 1): 0.15, ("batch", 32): 0.04,
         ("none", 1): 0.10, ("none", 32): 0.06}  # fmt: skip


def _cells(errors: dict, seeds: int = 5, noise: float = 0.004) -> pd.DataFrame:
    """`error_cells` with the ``bnp`` scheme as no norm + ``bn_precondition``."""
    frame = pd.DataFrame(error_cells(errors, seeds, noise))
    bnp = frame["norm"] == "bnp"
    return frame.assign(norm=frame["norm"].where(~bnp, "none"), bn_precondition=bnp)


def _records(cond_plain: float, cond_bnp: float, seeds: int = 5, spread: float = 0.3):
    """Hessian records of the BNP and no-norm cells at batch 32, start and end."""
    rng = np.random.default_rng(1)
    rows = []
    for seed in range(seeds):
        for norm, bnp in (("none", True), ("none", False)):
            cell = f"{norm}-{bnp}"
            for step in (0, 100):
                for key, value in (("plain", cond_plain), ("bnp", cond_bnp)):
                    for m, v in ((LayerHessianBNP.COND, value), (LayerHessianBNP.TOP, 1.0)):
                        noisy = v * math.exp(rng.normal(0, spread))
                        rows.append(dict(cell=cell, seed=seed, step=step, metric=m, key=key,
                                         value=noisy, batch_size=32, norm=norm,
                                         bn_precondition=bnp))  # fmt: skip
    return pd.DataFrame(rows)


def _results(errors=HOLDS, cond=(1e6, 1e4), **kw):
    return Results(_records(*cond), _cells(errors, **kw), {})


def test_statistics_by_hand():
    items = statistics(_results(HOLDS, noise=0))
    rows = {i.name: i for i in items if not isinstance(i, CheckValue)}
    assert list(rows["bnp_vs_bn_online"].values) == pytest.approx([0.10] * 5)
    assert list(rows["bnp_batch_flat"].values) == pytest.approx([0.0] * 5)
    assert list(rows["bnp_vs_none_online"].values) == pytest.approx([0.05] * 5)
    assert np.mean(rows["log_cond_gain"].values) == pytest.approx(math.log(100), abs=0.5)
    checks = {(i.claim, i.name): i.value for i in items if isinstance(i, CheckValue)}
    assert checks[("BNP-BATCH", "bnp_trained")] == pytest.approx(0.95)


def test_verdicts():
    verdicts = judge_study(STUDY, _results())
    assert verdicts["BNP-BATCH"].verdict == "supported"
    assert verdicts["BNP-HESS"].verdict == "supported"
    same = judge_study(STUDY, _results(cond=(1e4, 1e4)))["BNP-HESS"]
    assert same.verdict in {"refuted", "inconclusive"} and same.verdict != "supported"
    worse_online = judge_study(STUDY, _results({**HOLDS, ("bnp", 1): 0.15}))["BNP-BATCH"]
    assert worse_online.verdict == "refuted"


def test_bnp_hess_untestable_when_bnp_did_not_train():
    verdict = judge_study(STUDY, _results({**HOLDS, ("bnp", 32): 0.5}))["BNP-HESS"]
    assert verdict.verdict == "not testable at this scale"


def test_a_tuning_run_decides_nothing_and_the_standard_cells_train_at_the_tuned_rates():
    """The tune_standard run's cells are evaluated on a validation split: no evidence from them,
    whatever their errors. The standard cells train at their scheme's tuned base rate, scaled
    by B/32 as before (the lr_tuning figure draws only a tuning run)."""
    from studies.bn_preconditioning import STANDARD_LRS, lr_tuning

    results = _results(HOLDS)
    results.cells["validation"] = 0.2
    assert judge_study(STUDY, results) == {}
    assert STUDY.profile("tune_standard").first_seed >= 100 > STUDY.profile("standard").seeds
    assert STUDY.tier("tune_standard") == "standard"  # it tunes on Fashion-MNIST, not digits
    assert lr_tuning(_results(HOLDS)) is None
    cells = STUDY.profile("standard").grid.cells()
    assert len(cells) == 6
    for cell in cells:
        scheme = "bnp" if cell.bn_precondition else cell.norm
        assert cell.lr == STANDARD_LRS[scheme] and cell.lr_scaling == "linear", cell
    assert len(set(STANDARD_LRS.values())) == 3  # the three schemes chose different rates
