"""Does Ghost BN (statistics over small groups of each batch) regularize and improve accuracy?

Claim GHOST-REG (``shared/CLAIMS.md``; Hoffer et al. 2017, Summers & Dinneen 2019): Ghost BN,
normalizing with the statistics of ghost batches of e.g. 16 examples, regularizes and improves
test accuracy at small and medium batch sizes. Statistics, paired by seed and batch size: test
accuracy of Ghost BN (ghost size 16) − BN (> 0), and the generalization gap (training-set loss −
test loss, both in eval mode at the end) of BN − Ghost BN 16 (> 0: Ghost BN generalizes better).
The detail gives every ghost size.

Protocol: a 3-layer convnet (width 16) on the digits, SGD with momentum 0.9, the same number of
examples at every batch size (learning rate scaled linearly with the batch size, 0.05 at 32), BN and
Ghost BN with ghost sizes 2, 4, 8, 16; Ghost BN's inference uses the population statistics of the
full batches, exactly as BN's. Small nets on offline data will not reproduce ImageNet numbers: the
verdict is about the direction and size of the effect at this scale.
"""

import functools

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from normtheory.experiment import TrainCell, cell_data
from normtheory.hooks import LossAccuracy
from normtheory.report.figures import missing_figure, summarize_ci
from normtheory.stats import paired_diff_ci, verdict
from normtheory.study import Grid, Profile, Results, Study

BASE = TrainCell(
    dataset="digits",
    arch="convnet",
    norm="batch",
    width=16,
    depth=3,
    optimizer="sgd",
    lr=0.05,
    lr_scaling="linear",
    ref_batch=32,
    momentum=0.9,
    batch_size=32,
    examples=9600,
)
GHOSTS = (2, 4, 8, 16)
CASES = ({"tag": "BN", "norm": "batch"},) + tuple(
    {"tag": f"Ghost BN {g}", "norm": "ghost_batch", "ghost_size": g} for g in GHOSTS
)
ORDER = [c["tag"] for c in CASES]
MAIN = "Ghost BN 16"
COLORS = dict(zip(ORDER, plt.get_cmap("viridis")(np.linspace(0.9, 0.1, len(ORDER)))))
COLORS["BN"] = (0.12, 0.47, 0.71, 1.0)


def _last(step: int, *, n: int) -> bool:
    return step == n - 1


def hooks(cell: TrainCell):
    train_set, _ = cell_data(cell)
    return [
        LossAccuracy(every=10),
        LossAccuracy(
            name="trainset", data=train_set, every=functools.partial(_last, n=cell.effective_steps)
        ),
    ]


def outcomes(results: Results) -> pd.DataFrame:
    """Per tag × batch size × seed: test accuracy, test loss, training-set loss and the gap."""
    cells = results.cells[results.cells["status"] == "completed"]
    rec = results.records
    data_loss = rec[rec["metric"] == "trainset.data_loss"].groupby(["cell", "seed"])["value"].last()
    data_acc = rec[rec["metric"] == "trainset.data_acc"].groupby(["cell", "seed"])["value"].last()
    table = cells.join(data_loss.rename("train_set_loss"), on=["cell", "seed"]).join(
        data_acc.rename("train_set_acc"), on=["cell", "seed"]
    )
    table["gap"] = table["final_test_loss"] - table["train_set_loss"]
    return table


def verdicts(results: Results):
    table = outcomes(results)
    if table.empty or not {"BN", MAIN} <= set(table["tag"]):
        return []
    wide = table.pivot_table(
        index=["batch_size", "seed"], columns="tag", values=["final_test_acc", "gap"]
    )
    acc, gap = wide["final_test_acc"], wide["gap"]
    per = table.groupby(["tag", "batch_size"])["final_test_acc"].mean().unstack("batch_size")
    detail = "test accuracy (mean over seeds) by batch size — " + "; ".join(
        f"{t}: " + ", ".join(f"B={b}: {per.loc[t, b]:.3f}" for b in per.columns)
        for t in ORDER
        if t in per.index
    )
    gaps = table.groupby("tag")["gap"].mean()
    gap_detail = "generalization gap (test loss − training-set loss) — " + ", ".join(
        f"{t}: {gaps[t]:.3f}" for t in ORDER if t in gaps
    )
    return [
        verdict(
            "GHOST-REG",
            f"test accuracy {MAIN} − BN (paired by seed and batch size)",
            paired_diff_ci(acc[MAIN], acc["BN"]),
            "greater",
            detail=detail,
        ),
        verdict(
            "GHOST-REG",
            f"generalization gap BN − {MAIN}",
            paired_diff_ci(gap["BN"], gap[MAIN]),
            "greater",
            detail=gap_detail,
        ),
    ]


def accuracy(results: Results):
    """Test accuracy and generalization gap vs batch size per ghost size."""
    table = outcomes(results)
    if table.empty:
        return missing_figure("ghost batch", ["completed cells"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for tag in ORDER:
        sub = table[table["tag"] == tag]
        if sub.empty:
            continue
        for ax, column in ((ax1, "final_test_acc"), (ax2, "gap")):
            s = summarize_ci(sub, ["batch_size"], column)
            ax.plot(s["batch_size"], s["mean"], "o-", color=COLORS[tag], label=tag, ms=4)
            ax.fill_between(
                s["batch_size"], s["low"], s["high"], color=COLORS[tag], alpha=0.15, lw=0
            )
    sizes = sorted(table["batch_size"].unique())
    for ax, label in ((ax1, "final test accuracy"), (ax2, "test loss − training-set loss")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.minorticks_off()
        ax.set(xlabel="batch size (log₂)", ylabel=label)
        ax.grid(alpha=0.3)
    ax1.set_title("Accuracy")
    ax2.set_title("Generalization gap (lower is better)")
    ax2.legend(fontsize=8)
    fig.suptitle("BN vs Ghost BN at equal examples seen (mean, 95% CI over seeds)")
    fig.tight_layout()
    return fig


STUDY = Study(
    name="ghost_batch",
    title="Ghost Batch Normalization as a regularizer",
    claims=("GHOST-REG",),
    profiles={
        "quick": Profile(
            Grid(BASE, {"batch_size": (32, 128)}, CASES),
            seeds=6,
            description="BN and Ghost BN 2/4/8/16 × batch 32, 128; 9600 examples; 6 seeds",
        ),
        "full": Profile(
            Grid(BASE, {"batch_size": (32, 64, 128), "examples": (40000,)}, CASES),
            seeds=8,
            description="BN and Ghost BN 2/4/8/16 × batch 32, 64, 128; 40000 examples; 8 seeds",
        ),
    },
    hooks=hooks,
    verdicts=verdicts,
    figures={"accuracy": accuracy},
)
