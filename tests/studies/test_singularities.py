"""The singularities study: a smoke run through the CLI on a tiny grid (sane channel health, BN
at (0, 1) at step 0), and its WS-SINGULAR verdicts on synthetic results with known answers."""

import numpy as np
import pandas as pd
import pytest

from normtheory.hooks import Singularities
from normtheory.results import Results
from normtheory.verdicts import judge_study
from studies.singularities import NORMS, STUDY, per_run

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["dead_gn", "dead_ln", "drift_gn", "drift_ln", "statdiff_gn", "statdiff_ln"]


def test_singularities(study_cli):
    out, rows = study_cli.run(
        "singularities",
        "steps=8",
        "batch_size=16",
        "width=4",
        "depth=2",
        "groups=2",
        "eval_every=4",
    )
    assert set(rows["claim"]) == {"WS-SINGULAR"} and sorted(rows["name"]) == NAMES
    assert (rows["n_seeds"] == 2).all() and np.isfinite(rows["estimate"]).all()
    assert rows["detail"].str.contains("Spearman").all()
    study_cli.figures(["drift", "accuracy_relation"])
    results = Results.load(out)
    singular = results.records[results.records["metric"].isin(Singularities.METRICS)]
    assert set(singular["key"]) == {"norm1", "norm2"}
    assert np.isfinite(singular["value"]).all()
    runs = per_run(results)
    assert len(runs) == 5 * 2 and runs["test_acc"].between(0, 1).all()
    assert runs[["dead_final", "off_final"]].stack().between(0, 1).all()
    # The statistics are paired differences of the per-run table.
    wide = runs.pivot(index="seed", columns="norm")["stat_diff_mean"]
    row = rows.set_index("name").loc["statdiff_gn"]
    assert row["estimate"] == pytest.approx((wide["group"] - wide["group+ws"]).mean(), rel=1e-3)
    # Train-mode BN with γ = 1, β = 0 outputs zero-mean, unit-variance channels at step 0.
    start = runs.set_index(["norm", "seed"])["stat_diff_start"]
    assert len(start["batch"]) == 2 and (start["batch"] < 1e-2).all()
    assert (start["group"] > 0.05).all()  # GN normalizes groups, not channels


STEPS = (0, 25, 50, 75, 100)


def _results(rise, *, dead=0.1, seeds=6) -> Results:
    """Probe records of two layers per run: StatDiff starts at 0.3 (GN, LN), 0.2 (with WS) and 0
    (BN) and rises linearly by `rise` (GN, LN), 0 (with WS) or 0.1 (BN) by the last probe, plus
    seed noise; the final dead fraction is `dead` for GN and LN and 0.2 for the others."""
    rng = np.random.default_rng(3)
    start = {"group": 0.3, "layer": 0.3, "group+ws": 0.2, "layer+ws": 0.2, "batch": 0.0}
    records, cells = [], []
    for norm in NORMS:
        plain = norm in ("group", "layer")
        for s in range(seeds):
            r = (rise if plain else 0.1 * (norm == "batch")) + rng.normal(0, 0.01)
            for step in STEPS:
                t = step / STEPS[-1]
                d = (dead if plain else 0.2) * (step == STEPS[-1])
                for layer in ("norm1", "norm2"):
                    values = {
                        "stat_diff": start[norm] + r * t + rng.normal(0, 0.005),
                        "dead": d,
                        "off": 0.1 + d / 2,
                    }
                    records += [
                        {
                            "cell": f"norm={norm}",
                            "seed": s,
                            "step": step,
                            "norm": norm,
                            "metric": Singularities.PREFIX + k,
                            "key": layer,
                            "value": v,
                        }
                        for k, v in values.items()
                    ]
            cells.append(
                {
                    "cell": f"norm={norm}",
                    "norm": norm,
                    "seed": s,
                    "status": "completed",
                    "final_test_acc": 0.95 - 0.1 * r,
                }
            )
    return Results(pd.DataFrame(records), pd.DataFrame(cells), {})


def test_singularities_verdicts_on_known_answers():
    """GN and LN drift away from (0, 1) while WS stays → supported (the secondary dead fraction,
    lower than WS's here, does not decide); they drift back below WS → refuted; no plain GN/LN
    channel dies (though WS and BN ones do) → not testable; 3 seeds → underpowered."""
    good = judge_study(STUDY, _results(0.3))["WS-SINGULAR"]
    assert good.verdict == "supported"
    rows = {r.name: r for r in good.rows}
    assert sorted(rows) == NAMES and {r.n_seeds for r in rows.values()} == {6}
    # Mean over the probes after step 0: 0.1 + 0.3 · mean(¼, ½, ¾, 1); drift 0.3.
    assert rows["statdiff_gn"].estimate == pytest.approx(0.1 + 0.3 * 0.625, abs=0.01)
    assert rows["drift_ln"].estimate == pytest.approx(0.3, abs=0.01)
    # Secondary: final dead fraction, 0.1 (GN, LN) − 0.2 (with WS); it does not decide.
    assert rows["dead_gn"].estimate == pytest.approx(-0.1) and not rows["dead_gn"].primary
    assert rows["dead_ln"].estimate == pytest.approx(-0.1)
    assert good.checks[0][1] == pytest.approx(0.1)
    assert judge_study(STUDY, _results(-0.3))["WS-SINGULAR"].verdict == "refuted"
    alive = judge_study(STUDY, _results(0.3, dead=0.0))["WS-SINGULAR"]
    assert alive.verdict == "not testable at this scale"
    few = judge_study(STUDY, _results(0.3, seeds=3))["WS-SINGULAR"]
    assert (few.verdict, few.note) == ("inconclusive", "underpowered")


def test_singularities_per_run_counts_a_diverged_run_as_accuracy_zero():
    """The accuracy the detail and the figure relate StatDiff to follows the one final-metric
    policy: a diverged run is accuracy 0, a failed one is left out."""
    results = _results(0.3)
    cells = results.cells.copy()
    cells.loc[0, "status"], cells.loc[1, "status"] = "diverged", "failed"
    runs = per_run(Results(results.records, cells, {})).set_index(["norm", "seed"])["test_acc"]
    assert runs[cells.loc[0, "norm"], cells.loc[0, "seed"]] == 0
    assert np.isnan(runs[cells.loc[1, "norm"], cells.loc[1, "seed"]])
    assert runs.drop([(cells.loc[i, "norm"], cells.loc[i, "seed"]) for i in (0, 1)]).gt(0.9).all()
