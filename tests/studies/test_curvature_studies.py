"""Smoke runs of the curvature studies through the CLI on tiny grids: stored metrics, verdicts, figures."""

import pandas as pd
import pytest

from normtheory.cli import main
from normtheory.results import load, load_cells

CASES = {
    "smoothness": (
        ["steps=12", "width=4", "depth=3", "batch_size=32"],
        ["BN-SMOOTH", "WS-SMOOTH"],
        ["landscape"],
        ["smoothness.beta", "smoothness.loss_range", "hessian.eig"],
    ),
    "lr_stability": (
        ["steps=10", "width=4", "depth=2", "lr=0.01,1.0,100.0"],
        ["BN-LR"],
        ["stability"],
        ["one_step.relative_change", "outcome.test_loss"],
    ),
    "hessian_depth": (
        ["steps=5", "width=4", "depth=8,14"],
        ["BN-DEPTH-HESS"],
        ["top_eigs", "density_eval", "density_train"],
        [
            "eig_eval.eig",
            "eig_train.eig",
            "trace_eval.trace",
            "density_eval.node",
            "density_train.weight",
        ],
    ),
}


# The full hessian_depth smoke grid (depth 8 and 14, ± residual, ± BN) spends ~3 min on 2 cores
# in end-of-training Hessian measurements: it is opt-in; the default run uses a 4-cell grid.
CASES["hessian_depth_small"] = (
    ["steps=5", "width=4", "depth=8", "residual=true"],
    *CASES["hessian_depth"][1:],
)
PARAMS = [
    pytest.param(s, marks=pytest.mark.slow) if s == "hessian_depth" else s for s in sorted(CASES)
]


@pytest.mark.parametrize("study", PARAMS)
def test_study_runs_and_reports(study, tmp_path):
    overrides, claims, figures, metrics = CASES[study]
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                study.removesuffix("_small"),
                "--seeds",
                "2",
                "--device",
                "cpu",
                "--out",
                str(out),
                *overrides,
            ]
        )
        == 0
    )
    records, cells = load(out), load_cells(out)
    assert set(cells["status"]) <= {"completed", "diverged"}
    for metric in metrics:
        values = records.loc[records.metric == metric, "value"]
        assert len(values) and values.notna().all(), metric
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    claims_table = pd.read_csv(tmp_path / "rep" / "results" / "claims.csv")
    assert set(claims) <= set(claims_table["claim"])
    assert set(claims_table["verdict"]) <= {"supported", "refuted", "inconclusive", "not run"}
    for fig in figures:
        png = tmp_path / "rep" / "figures" / f"run-{fig}.png"
        assert png.exists() and png.stat().st_size > 10_000, fig


def test_hessian_depth_density_weights_sum_to_one(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "hessian_depth",
                "--seeds",
                "1",
                "--device",
                "cpu",
                "--out",
                str(out),
                "steps=3",
                "width=4",
                "depth=8",
                "residual=true",
                "norm=batch",
            ]
        )
        == 0
    )
    rec = load(out)
    weights = rec[rec.metric == "density_eval.weight"]
    assert weights.groupby(weights["key"].str.split(":").str[0])[
        "value"
    ].sum().tolist() == pytest.approx([1.0])
