"""How test error depends on batch size for each normalization scheme, at equal examples seen.

Claims (``shared/CLAIMS.md``):
- GN-BATCH (Wu & He 2018): BN's error rises sharply as the batch shrinks; GN stays flat.
  Statistic: [err_BN(B_min) − err_BN(B_max)] − [err_GN(B_min) − err_GN(B_max)], paired by seed; > 0.
- WS-MICRO (Qiao et al. 2019): GN+WS at the smallest batch matches or beats BN at the largest.
  Statistic: err_GN+WS(B_min) − err_BN(B_max) − δ with a 1-point non-inferiority margin δ; < 0.
- FRN-BATCH (Singh & Krishnan 2019): FRN+TLU beats GN at small batches.
  Statistic: err_GN(B_min) − err_FRN(B_min); > 0.
- BGN-TINY (Zhou et al. 2020): Batch-Group Norm beats both BN and GN at very small batches.
  Statistic: min(err_BN, err_GN)(B_min) − err_BGN(B_min), per seed; > 0.

Protocol: a small convnet on sklearn's handwritten digits (8×8), SGD with momentum, the learning
rate scaled linearly with batch size (Goyal et al. 2017, as in the GN paper), and the same number
of training examples for every batch size. The ImageNet numbers are not the target: the verdict
is about the direction and size of the effect at this scale. CIs are Student t over seeds.
"""

import seaborn as sns
from matplotlib import pyplot as plt

from normtheory.experiment import TrainCell
from normtheory.report.figures import missing_figure, norm_order, norm_palette, require_columns
from normtheory.stats import mean_ci, paired_diff_ci, verdict
from normtheory.study import Grid, Profile, Results, Study

NORMS = ("batch", "group", "layer", "instance", "group+ws", "frn", "batch_group", "none")
BASE = TrainCell(
    dataset="digits",
    arch="convnet",
    width=16,
    depth=3,
    groups=4,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    lr_scaling="linear",
    ref_batch=32,
    examples=8000,
)
MARGIN = 0.01  # WS-MICRO non-inferiority margin (error, absolute)


def _errors(results: Results):
    """Test error per (norm, batch_size, seed) from the cells' final metrics (diverged = error 1)."""
    cells = results.cells
    err = (1.0 - cells["final_test_acc"]).where(cells["status"] == "completed", 1.0)
    return cells.assign(test_error=err).pivot_table(
        index="seed", columns=["norm", "batch_size"], values="test_error"
    )


def verdicts(results: Results):
    err = _errors(results)
    sizes = sorted(err.columns.get_level_values("batch_size").unique())
    lo, hi = sizes[0], sizes[-1]
    out = []

    def have(*keys):
        return all(k in err.columns for k in keys)

    if have(("batch", lo), ("batch", hi), ("group", lo), ("group", hi)):
        rise_bn = err[("batch", lo)] - err[("batch", hi)]
        rise_gn = err[("group", lo)] - err[("group", hi)]
        est = paired_diff_ci(rise_bn, rise_gn)
        out.append(
            verdict(
                "GN-BATCH",
                f"BN error rise − GN error rise, batch {hi}→{lo}",
                est,
                "greater",
                detail=f"BN rise {mean_ci(rise_bn).value:+.3f}, GN rise {mean_ci(rise_gn).value:+.3f} (test error)",
            )
        )
    if have(("group+ws", lo), ("batch", hi)):
        est = mean_ci(err[("group+ws", lo)] - err[("batch", hi)] - MARGIN)
        out.append(
            verdict(
                "WS-MICRO",
                f"err GN+WS@{lo} − err BN@{hi} − {MARGIN} margin",
                est,
                "less",
                detail=f"non-inferiority with margin {MARGIN:.0%} absolute error",
            )
        )
    if have(("group", lo), ("frn", lo)):
        est = paired_diff_ci(err[("group", lo)], err[("frn", lo)])
        spread = err.xs("frn", axis=1, level="norm").mean().agg(["min", "max"])
        out.append(
            verdict(
                "FRN-BATCH",
                f"err GN@{lo} − err FRN@{lo}",
                est,
                "greater",
                detail=f"FRN mean error across batch sizes {spread['min']:.3f}–{spread['max']:.3f}",
            )
        )
    if have(("batch", lo), ("group", lo), ("batch_group", lo)):
        best = err[[("batch", lo), ("group", lo)]].min(axis=1)
        est = paired_diff_ci(best, err[("batch_group", lo)])
        out.append(verdict("BGN-TINY", f"min(err BN, err GN)@{lo} − err BGN@{lo}", est, "greater"))
    return out


def error_vs_batch(results: Results):
    cells = results.cells
    missing = require_columns(cells, ["norm", "batch_size", "final_test_acc", "seed"], "cells")
    if missing:
        return missing_figure("test error vs batch size", missing)
    frame = cells.assign(
        test_error=(1.0 - cells["final_test_acc"]).where(cells["status"] == "completed", 1.0)
    )
    order = norm_order(frame["norm"].unique())
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sns.lineplot(
        data=frame,
        x="batch_size",
        y="test_error",
        hue="norm",
        hue_order=order,
        palette=norm_palette(order),
        errorbar=("ci", 95),
        marker="o",
        ax=ax,
    )
    ax.set_xscale("log", base=2)
    ax.set_xticks(
        sorted(frame["batch_size"].unique()),
        labels=[str(b) for b in sorted(frame["batch_size"].unique())],
    )
    ax.set(
        xlabel="batch size (examples per step, log scale)",
        ylabel="test error (fraction)",
        title=f"Test error vs batch size, equal examples seen ({frame['seed'].nunique()} seeds, 95% CI)",
    )
    ax.legend(title="norm", bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return fig


STUDY = Study(
    name="batch_size",
    title="Test error vs batch size for every normalization scheme",
    claims=("GN-BATCH", "WS-MICRO", "FRN-BATCH", "BGN-TINY"),
    profiles={
        "quick": Profile(
            Grid(BASE, {"norm": NORMS, "batch_size": (2, 8, 32)}),
            seeds=2,
            description="3 batch sizes, 2 seeds, ≈3 min on 2 CPU cores",
        ),
        "full": Profile(
            Grid(BASE, {"norm": NORMS, "batch_size": (1, 2, 4, 8, 16, 32, 64, 128)}),
            seeds=5,
            description="8 batch sizes, 5 seeds",
        ),
    },
    verdicts=verdicts,
    figures={"error_vs_batch": error_vs_batch},
)
