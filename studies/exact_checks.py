"""The exact claims, checked in seconds on small seeded float64 problems.

Claims (``CLAIMS.md``): BN-GRAD and BN-HESS (Santurkar et al. 2018, Thm 4.1 in its 1/m form and
Thm 4.2), WS-GRAD (Qiao et al. 2019), SI-ORTH, SI-GROWTH and SPAN-ORTH (Liu et al. 2021), IC-CORR
and IC-MI (Chen et al. 2019). Each cell is one claim; each seed a new random problem. Both sides
of every identity come from the library's measurement functions (`normtheory.exact`); the
statistic is the worst deviation — relative error for the identities, |ratio − claim| in standard
errors of the sampled ratio for IC-CORR and IC-MI, which hold in expectation over dropout masks —
and the registry's tolerance decides (1e-10 and 4 standard errors).

The problems' sizes are the cell's ``scale`` (`normtheory.exact.EXACT_SCALES`): random float64
values in the shapes of real layers on real data, since the identities hold for any input and
what size changes is the rounding the tolerance must absorb (sums over N·H·W values per channel)
and the sampling error of the dropout ratios. ``quick``: the small problems of ``verify``.
``standard``: Fashion-MNIST's shapes — BN on a conv's (32, 16, 28, 28) output, WS on a 16-filter
conv over (32, 1, 28, 28) images, BN MLPs on 784 inputs (64 units), the span in R^784, IC layers
of 64 units; 5 seeds. ``paper`` checks the papers' identities (Santurkar et al. 2018 Thm 4.1–4.2,
Qiao et al. 2019 Eq. 5–6, Liu et al. 2021, Chen et al. 2019) at the shapes of ResNet-20's first
layer on CIFAR-10 batches of 128 — BN on (128, 16, 32, 32), WS on 16 filters over (128, 3, 32, 32)
images — and MLPs on the flattened images (3072 inputs, 128 units; the span in R^3072), IC layers
of 128 units; 5 seeds. It runs on the CPU (float64) whatever the device.
"""

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from normtheory.claims import get_claim
from normtheory.evidence import Exact
from normtheory.exact import EXACT_CLAIMS, exact_check, exact_scale
from normtheory.plots import attach_data, finish, missing_figure, panels
from normtheory.results import Results
from normtheory.study import Grid, Profile, Study
from normtheory.train import TrainResult

METRIC = "exact.error"


@dataclass(frozen=True)
class ExactCell:
    """One exact claim's check (its problem is drawn from the seed), at the problem sizes
    `scale` (`normtheory.exact.EXACT_SCALES`: small, fashion_mnist, cifar10)."""

    claim: str = "BN-GRAD"
    scale: str = "small"

    def __post_init__(self):
        exact_scale(self.scale)  # an unknown scale raises, naming the known ones


def run_cell(cell: ExactCell, seed: int, *, device=None, hooks=(), progress=None) -> TrainResult:
    """Runs the claim's check on the problem of `seed`: one record (its worst deviation) and the
    check's detail text in the cell's final values."""
    start = time.perf_counter()
    evidence = exact_check(cell.claim, seed, cell.scale)
    records = pd.DataFrame(
        [{"step": 0, "metric": METRIC, "key": evidence.name, "value": evidence.value}]
    )
    final = {"error": evidence.value, "statistic": evidence.name, "detail": evidence.detail}
    return TrainResult("completed", 0, None, final, records, time.perf_counter() - start, "cpu")


def errors(results: Results) -> pd.DataFrame:
    """Per claim: the registered statistic, the worst deviation over seeds, its tolerance."""
    cells = results.cells[results.cells["status"] == "completed"]
    rows = []
    for claim, sub in cells.groupby("claim", sort=False):
        name = sub["final_statistic"].iloc[0]
        worst = sub.loc[sub["final_error"].abs().idxmax()]
        tolerance = get_claim(claim).test.statistic(name).sesoi
        rows.append(
            {
                "claim": claim,
                "statistic": name,
                "error": float(worst["final_error"]),
                "tolerance": tolerance,
                "seeds": sub["seed"].nunique(),
                "detail": str(worst["final_detail"]),
            }
        )
    return pd.DataFrame(rows)


def statistics(results: Results):
    return [
        Exact(r.claim, r.statistic, r.error, r.seeds, f"worst seed: {r.detail}")
        for r in errors(results).itertuples()
    ]


def error_vs_tolerance(results: Results):
    """Each claim's worst error against its registered tolerance, log scale (errors span
    1e-17 … 1); an error of exactly 0 is drawn at the axis floor."""
    table = errors(results)
    if table.empty:
        return missing_figure("exact checks", ["completed cells"])
    table = table.iloc[::-1]
    floor = 1e-18
    error = table["error"].abs().clip(lower=floor)
    holds = error <= table["tolerance"]
    fig, (ax,) = panels(1, size=(7.5, 0.45 * len(table) + 1.4))
    y = np.arange(len(table))
    ax.scatter(error, y, color=np.where(holds, "seagreen", "crimson"), zorder=3, label="error")
    ax.scatter(table["tolerance"], y, marker="|", s=300, color="k", label="tolerance")
    for yi, e, t in zip(y, error, table["tolerance"]):
        ax.plot([e, t], [yi, yi], color="0.8", lw=1, zorder=1)
    ax.axvline(2.2e-16, color="0.5", ls=":", lw=1, label="float64 ε")
    ax.set_yticks(y, table["claim"])
    ax.set(xscale="log", xlim=(floor / 3, 30))
    ax.grid(alpha=0.3, axis="x")
    finish(
        fig,
        [ax],
        titles=["Exact checks: worst error vs registered tolerance (green: holds, red: fails)"],
        xlabel="worst error over seeds (relative; IC-CORR/IC-MI: in standard errors), log",
        legend="outside",
        grid=False,
    )
    return attach_data(fig, table[["claim", "statistic", "error", "tolerance", "seeds"]])


STUDY = Study(
    name="exact_checks",
    title="Exact checks: the identities, both sides computed",
    claims=EXACT_CLAIMS,
    profiles={
        "quick": Profile(
            Grid(ExactCell(), {"claim": EXACT_CLAIMS}),
            seeds=5,
            description="8 identities × 5 random float64 problems, seconds on a CPU",
        ),
        "standard": Profile(
            Grid(ExactCell(scale="fashion_mnist"), {"claim": EXACT_CLAIMS}),
            seeds=5,
            description="8 identities × 5 random float64 problems in Fashion-MNIST's shapes",
            cost="≈2 min on 2 CPU cores",
        ),
        "paper": Profile(
            Grid(ExactCell(scale="cifar10"), {"claim": EXACT_CLAIMS}),
            seeds=5,
            description="8 identities × 5 random float64 problems in the shapes of ResNet-20's "
            "first layer and MLPs on CIFAR-10 batches of 128",
            cost="≈15 min on one CPU core whatever the device (float64; SPAN-ORTH's span in "
            "R^3072 takes ≈2 min a seed)",
            smoke={"scale": "small"},
        ),
    },
    hooks=lambda cell: [],
    run_cell=run_cell,
    statistics=statistics,
    figures={"error_vs_tolerance": error_vs_tolerance},
)
