"""Does weight decay on BN's γ (toward 1) and β (toward 0) change accuracy?

Claim GAMMA-WD (``CLAIMS.md``; Summers & Dinneen 2019): weight decay on γ toward 1 and β toward 0
changes accuracy; the paper reports its direction and size per setting, so no direction is
claimed. Registered statistic (``normtheory/claims.toml``): ``acc_change``, test accuracy with
decay on both γ and β − without any, one row per batch size, paired by seed (two-sided; the claim
holds if any batch size shows a change); check ``baseline_trained``, the no-decay arm's mean test
accuracy. The details give γ-only and β-only.

Protocol: a BN convnet (width 16, depth 3) on the digits, SGD with momentum 0.9, weight decay
5e-4 on the conv/linear weights in every arm, equal examples seen at batch sizes 8, 32 and 128
(learning rate scaled with √B); four arms: no decay on the norms' parameters (the default of
`normtheory`, as of most codebases), γ → 1 only, β → 0 only, both, each with λ = 5e-3
(`normtheory.optim.NormDecay`). Small nets on offline data will not reproduce ImageNet numbers:
the verdict is about the direction and size of the effect at this scale.
"""

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from normtheory.experiment import TrainCell
from normtheory.hooks import LossAccuracy
from normtheory.report.figures import missing_figure, summarize_ci
from normtheory.study import Grid, Profile, Results, Study
from normtheory.verdicts import CheckValue, sample

LAMBDA = 5e-3
BASE = TrainCell(
    dataset="digits",
    arch="convnet",
    norm="batch",
    width=16,
    depth=3,
    optimizer="sgd",
    lr=0.05,
    lr_scaling="sqrt",
    ref_batch=32,
    momentum=0.9,
    weight_decay=5e-4,
    batch_size=32,
    examples=4800,
)
CASES = (
    {"tag": "no γ/β decay", "gamma_decay": 0.0, "beta_decay": 0.0},
    {"tag": "γ → 1", "gamma_decay": LAMBDA, "beta_decay": 0.0},
    {"tag": "β → 0", "gamma_decay": 0.0, "beta_decay": LAMBDA},
    {"tag": "γ → 1 and β → 0", "gamma_decay": LAMBDA, "beta_decay": LAMBDA},
)
ORDER = [c["tag"] for c in CASES]
NONE, BOTH = ORDER[0], ORDER[3]
COLORS = dict(zip(ORDER, sns.color_palette("Set1", len(ORDER))))


def hooks(cell: TrainCell):
    return [LossAccuracy(every=20)]


def finals(results: Results) -> pd.DataFrame:
    cells = results.cells
    return cells[cells["status"] == "completed"]


def statistics(results: Results):
    """GAMMA-WD: ``acc_change``, test accuracy with decay on γ and β − without, one row per batch
    size, paired by seed; check ``baseline_trained``, the no-decay arm's mean test accuracy.
    Failed or diverged cells are left out."""
    table = finals(results)
    if table.empty or not {NONE, BOTH} <= set(table["tag"]):
        return []
    out = []
    for b, sub in table.groupby("batch_size"):
        wide = sub.pivot_table(index="seed", columns="tag", values="final_test_acc")
        if not {NONE, BOTH} <= set(wide.columns):
            continue
        others = ", ".join(
            f"{t}: {(wide[t] - wide[NONE]).mean():+.4f}" for t in ORDER[1:] if t in wide
        )
        out.append(
            sample(
                "GAMMA-WD",
                "acc_change",
                wide[BOTH] - wide[NONE],
                condition=str(b),
                detail=f"B = {b}, mean change vs no γ/β decay — {others}; no decay: "
                f"{wide[NONE].mean():.3f}",
            )
        )
    base = table[table["tag"] == NONE]
    by_size = base.groupby("batch_size")["final_test_acc"].mean()
    out.append(
        CheckValue(
            "GAMMA-WD",
            "baseline_trained",
            float(base["final_test_acc"].mean()),
            detail="no-decay test accuracy by batch size — "
            + ", ".join(f"B={b}: {a:.3f}" for b, a in by_size.items()),
        )
    )
    return out


def paired_changes(results: Results) -> pd.DataFrame:
    """Per decay arm, batch size and seed: test accuracy minus the no-decay arm's (same seed)."""
    table = finals(results)
    wide = table.pivot_table(index=["batch_size", "seed"], columns="tag", values="final_test_acc")
    if NONE not in wide:
        return pd.DataFrame(columns=["batch_size", "seed", "tag", "change"])
    change = wide.drop(columns=NONE).sub(wide[NONE], axis=0)
    return change.stack().rename("change").reset_index()


def accuracy(results: Results):
    """Final test accuracy per arm and batch size, and its paired change against no decay."""
    table = finals(results)
    if table.empty:
        return missing_figure("γ/β decay", ["completed cells"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    sizes = sorted(table["batch_size"].unique())
    pos = {b: i for i, b in enumerate(sizes)}
    offsets = dict(zip(ORDER, np.linspace(-0.24, 0.24, len(ORDER))))

    def points(ax, frame: pd.DataFrame, column: str, tag: str) -> None:
        s = summarize_ci(frame[frame["tag"] == tag], ["batch_size"], column)
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

    changes = paired_changes(results)
    for tag in ORDER:
        points(ax1, table, "final_test_acc", tag)
        if tag in set(changes["tag"]):
            points(ax2, changes, "change", tag)
    ax2.axhline(0, color="gray", ls="--", lw=1)
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(sizes)), [str(b) for b in sizes])
        ax.set_xlabel("batch size (equal examples seen)")
        ax.grid(alpha=0.3)
    ax1.set(ylabel="final test accuracy", title="Accuracy per arm")
    ax2.set(
        ylabel="test accuracy − no γ/β decay (same seed)",
        title="Paired change against no decay (> 0: decay helps)",
    )
    fig.legend(
        *ax1.get_legend_handles_labels(),
        title=f"decay of BN's γ, β\n(λ = {LAMBDA:g})",
        loc="center left",
        bbox_to_anchor=(1, 0.5),
    )
    fig.suptitle("Weight decay on BN's γ and β (mean and 95% t-CI over seeds)")
    fig.tight_layout()
    return fig


STUDY = Study(
    name="gamma_beta_decay",
    title="Weight decay on BN's γ (toward 1) and β (toward 0)",
    claims=("GAMMA-WD",),
    profiles={
        "quick": Profile(
            Grid(BASE, {"batch_size": (8, 32, 128)}, CASES),
            seeds=6,
            description="4 decay arms × batch 8, 32, 128; 4800 examples; 6 seeds",
        ),
        "full": Profile(
            Grid(BASE, {"batch_size": (8, 32, 128), "examples": (40000,)}, CASES),
            seeds=8,
            description="4 decay arms × batch 8, 32, 128; 40000 examples; 8 seeds",
        ),
    },
    hooks=hooks,
    statistics=statistics,
    figures={"accuracy": accuracy},
)
