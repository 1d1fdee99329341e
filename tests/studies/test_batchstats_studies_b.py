"""Smoke runs of the batch_group and singularities studies through the CLI on tiny grids: the
claims get verdicts, the figures are drawn, and the stored measurements are sane."""

import numpy as np
import pandas as pd
import pytest

from normtheory.study import Results
from studies.batch_group import error_table
from studies.batch_group import verdicts as bgn_verdicts
from studies.singularities import health, per_run

ALLOWED = {"supported", "refuted", "inconclusive", "not run"}

pytestmark = pytest.mark.usefixtures("one_thread")


def test_batch_group(study_cli):
    out, claims = study_cli.run(
        "batch_group", "batch_size=1,2", "examples=16", "width=4", "groups=2"
    )
    assert list(claims["claim"]) == ["BGN-TINY", "BGN-TINY"]
    assert set(claims["verdict"]) <= ALLOWED
    assert all("B=1" in d and "B=2" in d for d in claims["detail"])
    study_cli.figures(["error_vs_batch"])
    cells = error_table(Results.load(out))
    assert len(cells) == 3 * 2 * 2 and set(cells["status"]) == {"completed"}
    assert (cells["steps_done"] == 16 // cells["batch_size"]).all()  # equal examples seen
    assert cells["test_error"].between(0, 1).all()


def _fake(errors: dict[str, list[float]], status=None) -> Results:
    """Results whose cells have the given test errors per norm (one per seed) at batch 2."""
    rows = [
        {"norm": n, "batch_size": 2, "seed": s, "status": "completed", "final_test_acc": 1 - e}
        for n, errs in errors.items()
        for s, e in enumerate(errs)
    ]
    cells = pd.DataFrame(rows)
    if status:
        cells.loc[(cells.norm == status[0]) & (cells.seed == status[1]), "status"] = "diverged"
    return Results(pd.DataFrame(), cells, {})


def test_batch_group_verdicts_on_known_errors():
    """BGN clearly best → both rows supported; clearly worse than BN → refuted against BN; a
    diverged run counts as error 1."""
    errs = {"batch": [0.5, 0.52, 0.49], "group": [0.3, 0.33, 0.31], "batch_group": [0.1, 0.12, 0.1]}
    rows = bgn_verdicts(_fake(errs))
    assert [r.verdict for r in rows] == ["supported", "supported"]
    assert rows[0].estimate == pytest.approx(np.mean([0.4, 0.4, 0.39]))
    rows = bgn_verdicts(_fake({**errs, "batch_group": [0.6, 0.6, 0.6]}))
    assert rows[0].verdict == "refuted"
    table = error_table(_fake(errs, status=("batch_group", 1)))
    assert table["test_error"].tolist() == pytest.approx(
        [*errs["batch"], *errs["group"], 0.1, 1, 0.1]
    )


def test_singularities(study_cli):
    out, claims = study_cli.run(
        "singularities",
        "steps=8",
        "batch_size=16",
        "width=4",
        "depth=2",
        "groups=2",
        "eval_every=4",
    )
    assert list(claims["claim"]) == ["WS-SINGULAR"] * 4
    assert set(claims["verdict"]) <= ALLOWED
    estimates = claims["estimate"].str.split().str[0].astype(float)  # "0.1 [0.05, 0.2]"
    assert np.isfinite(estimates).all()
    assert claims["detail"].str.contains("Spearman").all()
    study_cli.figures(["drift", "accuracy_relation"])
    results = Results.load(out)
    singular = results.records[results.records["metric"].str.startswith("singular.")]
    assert set(singular["key"]) == {"norm1", "norm2"}
    assert np.isfinite(singular["value"]).all()
    runs = per_run(results)
    assert len(runs) == 5 * 2 and runs["test_acc"].between(0, 1).all()
    assert runs[["dead_final", "off_final"]].stack().between(0, 1).all()
    # Train-mode BN with γ = 1, β = 0 outputs zero-mean, unit-variance channels at step 0.
    table = health(results)
    bn_start = table[(table["norm"] == "batch") & (table["step"] == 0)]["stat_diff"]
    assert len(bn_start) == 2 and (bn_start < 1e-2).all()
    gn_start = table[(table["norm"] == "group") & (table["step"] == 0)]["stat_diff"]
    assert (gn_start > 0.05).all()  # GN normalizes groups, not channels
