"""How large a learning rate can each normalization scheme take?

Claim BN-LR (Bjorck et al. 2018; ``CLAIMS.md``, registered test in ``normtheory/claims.toml``):
the largest stable learning rate with BN is far larger than without (paper: the no-BN one-step
loss explodes past LR ≈ 1e-3, BN is fine up to ≈ 0.1). Statistic ``log10_lr_ratio``:
log10(max stable LR with BN / max stable LR without), one value per seed, > 0; it is read off
the LR grid, so its interval is never narrower than the grid step allows. A run is *stable* when
it does not diverge (the loop records NaN/inf loss as ``diverged``) and its final test loss is
below the chance level ln(10). Check ``none_unstable``: the fraction of the no-BN net's seeds
that are unstable somewhere on the grid (all of them must be, else the grid never finds the
no-BN limit). The report gives the ratio, not absolute values.

Also Bjorck's one-step test at initialization: the relative loss change (L(w − ηg) − L(w))/L(w)
after a single gradient step of size η on a fixed batch, per norm and η.

Protocol: a 4-layer convnet on the digits, plain SGD (no momentum) at a log grid of learning
rates, short runs; GN as a batch-independent contrast.
"""

import math

import numpy as np
import pandas as pd

from normtheory import plots
from normtheory.analysis import metric
from normtheory.evidence import CheckValue, sample
from normtheory.experiment import TrainCell, probe_batch
from normtheory.hooks import LossAccuracy, OneStepLoss
from normtheory.results import Results
from normtheory.study import Grid, Profile, Study

BASE = TrainCell(dataset="digits", arch="convnet", width=16, depth=4, groups=4, optimizer="sgd",
                 lr=0.1, momentum=0.0, batch_size=64, steps=150)  # fmt: skip
LRS = tuple(float(f"{x:.3g}") for x in np.geomspace(1e-3, 30.0, 10))
CHANCE = math.log(10)


def hooks(cell: TrainCell):
    return [LossAccuracy(every=10), OneStepLoss(probe=probe_batch(cell, 256))]


def _stable(cells):
    return (cells["status"] == "completed") & (cells["final_test_loss"] < CHANCE)


def max_stable_lr(cells) -> pd.DataFrame:
    """Largest stable LR per seed (rows) and norm (columns); NaN where no LR was stable."""
    table = cells[_stable(cells)].groupby(["norm", "seed"])["lr"].max().unstack("norm")
    return table.reindex(
        index=sorted(cells["seed"].unique()), columns=sorted(cells["norm"].unique())
    )


def lr_resolution(cells) -> float:
    """The LR grid's step in log10 units (the largest, if uneven): each seed's ratio is read off
    the grid, so it is resolved only to this."""
    lrs = np.log10(np.sort(cells["lr"].unique()))
    return float(np.diff(lrs).max()) if len(lrs) > 1 else 0.0


def statistics(results: Results):
    cells = results.cells
    lr_max = max_stable_lr(cells)
    if "batch" not in lr_max or "none" not in lr_max:
        return []
    log_ratio = np.log10(lr_max["batch"] / lr_max["none"])
    step = lr_resolution(cells)
    parts = [f"{plots.norm_label(n)} {lr_max[n].median():.3g}" for n in lr_max.columns]
    detail = (
        f"max stable LR (median over seeds): {', '.join(parts)}; BN/none ratio "
        f"×{10 ** log_ratio.mean():.3g} (LR grid step ×{10**step:.3g})"
    )
    # per (norm, seed): whether some LR of the grid is unstable
    unstable = (~_stable(cells)).groupby([cells["norm"], cells["seed"]]).any()["none"]
    check = (
        f"{int(unstable.sum())} of {len(unstable)} no-norm seeds unstable somewhere on the grid "
        f"(LR {cells['lr'].min():g} … {cells['lr'].max():g})"
    )
    return [
        sample("BN-LR", "log10_lr_ratio", log_ratio, resolution=step, detail=detail),
        CheckValue("BN-LR", "none_unstable", float(unstable.mean()), detail=check),
    ]


def stability(results: Results):
    """Left: final test loss vs LR (geometric mean, 95 % t-CI; × marks an LR where a seed
    diverged). Right: the one-step relative loss change from initialization vs LR."""
    cells = results.cells
    done = cells[cells["status"] == "completed"].dropna(subset=["final_test_loss"])
    one_step = metric(results.records, OneStepLoss.RELATIVE_CHANGE)
    summaries = (
        plots.summarize_ci(done, ["norm", "lr"], "final_test_loss", log=True),
        plots.summarize_ci(
            plots.per_seed(one_step, ["norm", "lr"], "value"), ["norm", "lr"], "value"
        ),
    )
    fig, axes = plots.panels(2)
    for norm, color in plots.norm_palette(plots.norm_order(cells["norm"].unique())).items():
        label = plots.norm_label(norm)
        for ax, summary in zip(axes, summaries):
            if (summary["norm"] == norm).any():
                plots.ci_line(ax, summary[summary["norm"] == norm], "lr", color=color, label=label)
        div = cells.loc[(cells["norm"] == norm) & (cells["status"] == "diverged"), "lr"].unique()
        axes[0].scatter(div, [CHANCE * 1.5] * len(div), marker="x", color=color, s=50)
    axes[0].axhline(CHANCE, color="gray", ls="--", lw=1, label="chance ln 10")
    axes[0].set(xscale="log", yscale="log", ylabel="final test loss (log)")
    axes[1].set(xscale="log", ylabel="(L(w−ηg) − L(w)) / L(w)")
    axes[1].set_yscale("symlog", linthresh=0.1)
    axes[1].axhline(0, color="gray", lw=1)
    n = cells["seed"].nunique()
    return plots.finish(
        fig,
        axes,
        title="Stability against the learning rate\n(loss: geometric mean, one step: mean; "
        f"95% t-CI over {n} seeds)",
        titles=[
            f"Final test loss after {cells['steps'].max()} SGD steps (× = diverged)",
            "One gradient step from initialization",
        ],
        xlabel="learning rate (log)",
        legend_title="normalization",
    )


STUDY = Study(
    name="lr_stability",
    title="Largest stable learning rate with and without normalization",
    claims=("BN-LR",),
    profiles={
        "quick": Profile(
            Grid(BASE, {"norm": ("batch", "group", "none"), "lr": LRS}),
            seeds=5,
            description="10 LRs × 3 norms, 5 seeds",
        ),
        "full": Profile(
            Grid(BASE, {"norm": ("batch", "group", "group+ws", "layer", "none"), "lr": LRS}),
            seeds=5,
            description="10 LRs × 5 norms, 5 seeds",
        ),
    },
    hooks=hooks,
    statistics=statistics,
    figures={"stability": stability},
)
