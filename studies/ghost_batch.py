"""Does Ghost BN (statistics over small groups of each batch) regularize and improve accuracy?

Claim GHOST-REG (``CLAIMS.md``; Hoffer et al. 2017, Summers & Dinneen 2019): Ghost BN,
normalizing with the statistics of ghost batches of e.g. 16 examples, regularizes and improves
test accuracy at small and medium batch sizes. Registered statistics (``normtheory/claims.toml``):
``acc_gain``, the test accuracy of Ghost BN (ghost size 16) − BN, one row per batch size, paired
by seed (> 0); ``gap_reduction``, the generalization gap (test loss − training-set loss, both in
eval mode at the end) of BN − Ghost BN 16, averaged over batch sizes within a seed (> 0: Ghost BN
generalizes better); check ``bn_trained``, BN's mean test accuracy. The details give every ghost
size.

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
from normtheory.report.figures import missing_figure, norm_palette, summarize_ci
from normtheory.study import Grid, Profile, Results, Study
from normtheory.verdicts import CheckValue, sample

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
# BN and Ghost BN in their norm colours; smaller ghost sizes in darker shades of Ghost BN's.
_PALETTE = norm_palette(["batch", "ghost_batch"])
COLORS = {"BN": _PALETTE["batch"]} | {
    f"Ghost BN {g}": tuple(np.asarray(_PALETTE["ghost_batch"]) * (1 - 0.6 * k / len(GHOSTS)))
    for k, g in enumerate(reversed(GHOSTS))
}


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


def statistics(results: Results):
    """GHOST-REG: ``acc_gain`` (Ghost BN 16 − BN, one row per batch size, paired by seed),
    ``gap_reduction`` (BN − Ghost BN 16, averaged over batch sizes within a seed) and the check
    ``bn_trained`` (BN's mean test accuracy). Failed or diverged cells are left out."""
    table = outcomes(results)
    if table.empty or not {"BN", MAIN} <= set(table["tag"]):
        return []
    wide = table.pivot_table(
        index=["batch_size", "seed"], columns="tag", values=["final_test_acc", "gap"]
    )
    gain = (wide["final_test_acc"][MAIN] - wide["final_test_acc"]["BN"]).dropna()
    gap_cut = (wide["gap"]["BN"] - wide["gap"][MAIN]).dropna()
    per = table.groupby(["tag", "batch_size"])["final_test_acc"].mean().unstack("batch_size")
    gaps = table.groupby(["tag", "batch_size"])["gap"].mean().unstack("batch_size")
    bn = table[table["tag"] == "BN"]["final_test_acc"]
    out = []
    for b, values in gain.groupby(level="batch_size"):
        detail = f"B = {b}, test accuracy (mean over seeds) — " + ", ".join(
            f"{t}: {per.loc[t, b]:.3f}" for t in ORDER if t in per.index and b in per.columns
        )
        out.append(
            sample(
                "GHOST-REG",
                "acc_gain",
                values.droplevel("batch_size"),
                condition=str(b),
                detail=detail,
            )
        )
    gap_detail = (
        "generalization gap (test loss − training-set loss, mean over seeds) — "
        + "; ".join(
            f"{t}: " + ", ".join(f"B={b}: {gaps.loc[t, b]:.3f}" for b in gaps.columns)
            for t in ORDER
            if t in gaps.index
        )
    )
    out += [
        sample(
            "GHOST-REG",
            "gap_reduction",
            gap_cut.groupby(level="seed").mean(),
            detail=gap_detail,
        ),
        CheckValue(
            "GHOST-REG",
            "bn_trained",
            float(bn.mean()),
            detail=f"BN test accuracy, mean over {len(bn)} completed runs",
        ),
    ]
    return out


def accuracy(results: Results):
    """Test accuracy and generalization gap per batch size and ghost size (mean, 95% CI)."""
    table = outcomes(results)
    if table.empty:
        return missing_figure("ghost batch", ["completed cells"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sizes = sorted(table["batch_size"].unique())
    pos = {b: i for i, b in enumerate(sizes)}
    offsets = dict(zip(ORDER, np.linspace(-0.28, 0.28, len(ORDER))))
    for tag in ORDER:
        sub = table[table["tag"] == tag]
        for ax, column in zip(axes, ("final_test_acc", "gap")):
            s = summarize_ci(sub, ["batch_size"], column) if len(sub) else sub
            if len(s):
                ax.errorbar(
                    s["batch_size"].map(pos) + offsets[tag],
                    s["mean"],
                    yerr=[s["mean"] - s["low"], s["high"] - s["mean"]],
                    fmt="o",
                    color=COLORS[tag],
                    label=tag,
                    ms=5,
                    capsize=2,
                )
    for ax, label, title in (
        (axes[0], "final test accuracy", "Test accuracy (higher is better)"),
        (axes[1], "test loss − training-set loss", "Generalization gap (lower is better)"),
    ):
        ax.set_xticks(range(len(sizes)), [str(b) for b in sizes])
        ax.set(xlabel="batch size (equal examples seen)", ylabel=label, title=title)
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle("BN vs Ghost BN at equal examples seen (mean and 95% t-CI over seeds)")
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
    statistics=statistics,
    figures={"accuracy": accuracy},
)
