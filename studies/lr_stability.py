"""How large a learning rate can each normalization scheme take?

Claim BN-LR (Bjorck et al. 2018, ``shared/CLAIMS.md``): the largest stable learning rate with BN
is far larger than without (paper: the no-BN one-step loss explodes past LR ≈ 1e-3, BN is fine up
to ≈ 0.1). Statistic: log10(max stable LR with BN / max stable LR without), per seed; > 0.
A run is *stable* when it does not diverge (the loop records NaN/inf loss as ``diverged``) and its
final test loss is below the chance level ln(10). The report gives the ratio, not absolute values.

Also Bjorck's one-step test at initialization: the relative loss change (L(w − ηg) − L(w))/L(w)
after a single gradient step of size η on a fixed batch, per norm and η.

Protocol: a 4-layer convnet on the digits, plain SGD (no momentum) at a log grid of learning
rates, short runs; GN as a batch-independent contrast.
"""

import math

import numpy as np
from matplotlib import pyplot as plt

from normtheory.experiment import TrainCell, probe_batch
from normtheory.hooks import LossAccuracy, OneStepLoss
from normtheory.report.figures import ci_line, norm_order, norm_palette, summarize_ci
from normtheory.stats import mean_ci, verdict
from normtheory.study import Grid, Profile, Results, Study

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


def verdicts(results: Results):
    lr_max = max_stable_lr(results.cells)
    if "batch" not in lr_max or "none" not in lr_max:
        return []
    log_ratio = np.log10(lr_max["batch"] / lr_max["none"])
    est = mean_ci(log_ratio)
    parts = [f"{n}: {lr_max[n].median():.3g}" for n in lr_max.columns]
    detail = (
        f"max stable LR (median over seeds) — {', '.join(parts)}; BN/none ratio ×{10**est.value:.3g} "
        f"(LR grid spacing ×{LRS[1] / LRS[0]:.3g}: each seed's ratio is resolved only to that factor)"
    )
    return [
        verdict(
            "BN-LR", "log10(max stable LR BN / max stable LR none)", est, "greater", detail=detail
        )
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
            ci_line(ax1, summary, "lr", color=palette[norm], label=norm)
        div = sub[sub["status"] == "diverged"]["lr"].unique()
        ax1.scatter(div, [CHANCE * 1.5] * len(div), marker="x", color=palette[norm], s=50)
        one = rec[rec["norm"] == norm]
        if len(one):
            ci_line(ax2, summarize_ci(one, ["lr"], "value"), "lr", color=palette[norm], label=norm)
    ax1.axhline(CHANCE, color="gray", ls="--", lw=1, label="chance ln 10")
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="learning rate (log)",
        ylabel="final test loss (log)",
        title="Final test loss after 150 SGD steps (× = diverged)",
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
            seeds=3,
            description="10 LRs × 3 norms, 3 seeds",
        ),
        "full": Profile(
            Grid(BASE, {"norm": ("batch", "group", "group+ws", "layer", "none"), "lr": LRS}),
            seeds=5,
            description="10 LRs × 5 norms, 5 seeds",
        ),
    },
    hooks=hooks,
    verdicts=verdicts,
    figures={"stability": stability},
)
