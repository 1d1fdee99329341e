"""The gn_regularization study: a smoke run through the CLI on a tiny grid, the last-epoch
training error against a hand count, and known-answer tests of the GN-REG verdict."""

import numpy as np
import pandas as pd
import pytest

from normtheory.hooks import LossAccuracy
from normtheory.results import Results
from normtheory.verdicts import judge_study
from studies.gn_regularization import STUDY, outcomes

pytestmark = pytest.mark.usefixtures("one_thread")

CLAIM = "GN-REG"


def test_smoke(study_cli):
    out, rows = study_cli.run("gn_regularization", "epochs=1", "width=4")
    assert sorted(rows["name"]) == ["train_err_gap", "val_err_gap"]
    assert (rows["n_seeds"] == 2).all() and np.isfinite(rows["estimate"]).all()
    claim = study_cli.claims().set_index("claim").loc[CLAIM]
    assert claim["verdict"] in {"inconclusive", "not testable at this scale"}
    study_cli.figures(["errors", "curves"])
    table = outcomes(Results.load(out))
    assert len(table) == 4 and table["train_err"].between(0, 1).all()


def synthetic(*, train_err, test_err, seeds=5, steps=100, epoch=20, noise=0.002):
    """Cells and per-step training accuracies: norm n's training accuracy is 0.5 before the last
    epoch (its last `epoch` steps) and 1 − train_err[n] in it; its test error test_err[n]; seed
    noise on both."""
    rng = np.random.default_rng(0)
    cells, records = [], []
    for norm in ("batch", "group"):
        for seed in range(seeds):
            label = f"norm={norm}"
            err = train_err[norm] + rng.normal(0, noise)
            cells.append(dict(cell=label, seed=seed, norm=norm, status="completed",
                              steps_done=steps, eval_every=epoch,
                              final_test_acc=1 - test_err[norm] - rng.normal(0, noise)))  # fmt: skip
            for step in range(steps):
                value = 1 - err if step >= steps - epoch else 0.5
                records.append(dict(cell=label, seed=seed, norm=norm, step=step, key="",
                                    metric=LossAccuracy.TRAIN_ACC, value=value, eval_every=epoch))  # fmt: skip
    return Results(pd.DataFrame(records), pd.DataFrame(cells), {})


def test_training_error_is_the_last_epoch_only():
    """The steps before the last epoch (accuracy 0.5) do not count: oracle 1 − (1 − err)."""
    table = outcomes(synthetic(train_err={"batch": 0.03, "group": 0.01}, test_err={"batch": 0.05,
                                                                                   "group": 0.06},
                               noise=0.0))  # fmt: skip
    got = table.set_index(["norm", "seed"])["train_err"]
    assert got.loc["batch"].tolist() == pytest.approx([0.03] * 5)
    assert got.loc["group"].tolist() == pytest.approx([0.01] * 5)


def verdict(**kw):
    return judge_study(STUDY, synthetic(**kw))[CLAIM]


def test_supported_refuted_not_testable():
    good = verdict(
        train_err={"batch": 0.03, "group": 0.01}, test_err={"batch": 0.05, "group": 0.07}
    )
    assert good.verdict == "supported", good.reason
    rows = {r.name: r for r in good.rows}
    assert rows["train_err_gap"].estimate == pytest.approx(0.02, abs=0.004)
    assert rows["val_err_gap"].estimate == pytest.approx(0.02, abs=0.004)
    # GN generalizes better instead: a reversal of the validation row refutes the claim
    worse = verdict(
        train_err={"batch": 0.03, "group": 0.01}, test_err={"batch": 0.07, "group": 0.05}
    )
    assert worse.verdict == "refuted"
    # BN fits the training set perfectly: no training error to lower, not testable
    fitted = verdict(train_err={"batch": 0.0, "group": 0.0}, test_err={"batch": 0.05, "group": 0.07},
                     noise=0.0)  # fmt: skip
    assert fitted.verdict == "not testable at this scale"
    few = verdict(train_err={"batch": 0.03, "group": 0.01}, test_err={"batch": 0.05, "group": 0.07},
                  seeds=3)  # fmt: skip
    assert (few.verdict, few.note) == ("inconclusive", "underpowered")
