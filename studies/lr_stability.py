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
from matplotlib import pyplot as plt

from normtheory.experiment import TrainCell, probe_batch
from normtheory.hooks import LossAccuracy, OneStepLoss
from normtheory.report.figures import ci_line, norm_order, norm_palette, summarize_ci
from normtheory.study import Grid, Profile, Results, Study
from normtheory.verdicts import CheckValue, sample

BASE = TrainCell(
    dataset="digits",
    arch="convnet",
    width=16,
    depth=4,
    groups=4,
    optimizer="sgd",
    lr=0.1,
    momentum=0.0,
    batch_size=64,
    steps=150,
)
LRS = tuple(float(f"{x:.3g}") for x in np.geomspace(1e-3, 30.0, 10))
CHANCE = math.log(10)
NAMES = {"batch": "BN", "group": "GN", "group+ws": "GN + WS", "layer": "LN", "none": "no norm"}


def hooks(cell: TrainCell):
    return [LossAccuracy(every=10), OneStepLoss(probe=probe_batch(cell, 256))]


def _stable(cells):
    return (cells["status"] == "completed") & (cells["final_test_loss"] < CHANCE)


def max_stable_lr(cells):
    """Largest stable LR per (norm, seed); NaN where no LR was stable."""
    stable = cells[_stable(cells)]
    table = stable.groupby(["norm", "seed"])["lr"].max().unstack("norm")
    return table.reindex(
        index=sorted(cells["seed"].unique()), columns=sorted(cells["norm"].unique())
    )


def lr_resolution(cells) -> float:
    """The LR grid's step in log10 units (the largest, if uneven): each seed's ratio is read off
    the grid, so it is resolved only to this."""
    lrs = np.log10(np.sort(cells["lr"].unique()))
    return float(np.diff(lrs).max()) if len(lrs) > 1 else 0.0


def unstable_somewhere(cells) -> pd.Series:
    """Per (norm, seed): whether some LR of the grid is unstable."""
    return (~_stable(cells)).groupby([cells["norm"], cells["seed"]]).any()


def statistics(results: Results):
    cells = results.cells
    lr_max = max_stable_lr(cells)
    if "batch" not in lr_max or "none" not in lr_max:
        return []
    log_ratio = np.log10(lr_max["batch"] / lr_max["none"])
    step = lr_resolution(cells)
    parts = [f"{NAMES.get(n, n)} {lr_max[n].median():.3g}" for n in lr_max.columns]
    detail = (
        f"max stable LR (median over seeds): {', '.join(parts)}; BN/none ratio "
        f"×{10 ** log_ratio.mean():.3g} (LR grid step ×{10**step:.3g})"
    )
    unstable = unstable_somewhere(cells)["none"]
    check = (
        f"{int(unstable.sum())} of {len(unstable)} no-norm seeds unstable somewhere on the grid "
        f"(LR {cells['lr'].min():g} … {cells['lr'].max():g})"
    )
    return [
        sample("BN-LR", "log10_lr_ratio", log_ratio, resolution=step, detail=detail),
        CheckValue("BN-LR", "none_unstable", float(unstable.mean()), detail=check),
    ]


def stability(results: Results):
    cells = results.cells.assign(
        final_test_loss=lambda c: c["final_test_loss"].where(c["status"] == "completed")
    )
    rec = results.records[results.records["metric"] == "one_step.relative_change"]
    order = norm_order(cells["norm"].unique())
    palette = norm_palette(order)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for norm in order:
        sub = cells[cells["norm"] == norm]
        summary = summarize_ci(
            sub.dropna(subset=["final_test_loss"]), ["lr"], "final_test_loss", log=True
        )
        if len(summary):
            ci_line(ax1, summary, "lr", color=palette[norm], label=NAMES.get(norm, norm))
        div = sub[sub["status"] == "diverged"]["lr"].unique()
        ax1.scatter(div, [CHANCE * 1.5] * len(div), marker="x", color=palette[norm], s=50)
        one = rec[rec["norm"] == norm]
        if len(one):
            ci_line(
                ax2,
                summarize_ci(one, ["lr"], "value"),
                "lr",
                color=palette[norm],
                label=NAMES.get(norm, norm),
            )
    ax1.axhline(CHANCE, color="gray", ls="--", lw=1, label="chance ln 10")
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="learning rate (log)",
        ylabel="final test loss (log)",
        title=f"Final test loss after {cells['steps'].max()} SGD steps (× = diverged)",
    )
    ax2.set(
        xscale="log",
        xlabel="learning rate (log)",
        ylabel="(L(w−ηg) − L(w)) / L(w)",
        title="One gradient step from initialization",
    )
    ax2.set_yscale("symlog", linthresh=0.1)
    ax2.axhline(0, color="gray", lw=1)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


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
