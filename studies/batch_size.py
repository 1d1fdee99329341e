"""How test error depends on batch size for each normalization scheme, at equal examples seen.

Claims (``shared/CLAIMS.md``):
- GN-BATCH (Wu & He 2018): BN's error rises sharply as the batch shrinks; GN stays flat.
  Two statistics, both claimed > 0: BN's own rise err_BN(B_min) − err_BN(B_max), and the
  difference in differences [rise of BN] − [rise of GN], paired by seed (a GN that *improves* at
  small batch must not make a flat BN look like a supported claim).
- WS-MICRO (Qiao et al. 2019): GN+WS at the smallest batch matches or beats BN at the largest.
  Statistic: err_GN+WS(B_min) − err_BN(B_max) − δ with a 1-point non-inferiority margin δ; < 0.
- FRN-BATCH (Singh & Krishnan 2019): FRN+TLU beats GN at small batches.
  Statistic: err_GN(B_min) − err_FRN(B_min); > 0.
- BGN-TINY (Zhou et al. 2020): Batch-Group Norm beats both BN and GN at very small batches.
  Statistic: min(err_BN, err_GN)(B_min) − err_BGN(B_min), per seed; > 0.

Profiles: ``quick`` trains the five norms the claims compare (BN, GN, GN+WS, FRN, BGN) at batch
sizes 2, 8, 32 with 3 seeds; ``full`` adds LN, IN and no norm, batch sizes 1–128 and 5 seeds.

Protocol: a small convnet on sklearn's handwritten digits (8×8), SGD with momentum, the learning
rate scaled linearly with batch size (Goyal et al. 2017, as in the GN paper), and the same number
of training examples for every batch size. The ImageNet numbers are not the target: the verdict
is about the direction and size of the effect at this scale. CIs are Student t over seeds.
"""

from matplotlib import pyplot as plt

from normtheory.experiment import TrainCell
from normtheory.report.figures import (
    ci_line,
    missing_figure,
    norm_order,
    norm_palette,
    require_columns,
    summarize_ci,
)
from normtheory.stats import mean_ci, paired_diff_ci, verdict
from normtheory.study import Grid, Profile, Results, Study

NORMS = ("batch", "group", "layer", "instance", "group+ws", "frn", "batch_group", "none")
CLAIM_NORMS = ("batch", "group", "group+ws", "frn", "batch_group")  # what the four claims compare
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
    examples=4400,
)
MARGIN = 0.01  # WS-MICRO non-inferiority margin (error, absolute)


def _with_test_error(cells):
    """The cells with a ``test_error`` column from their final accuracy (diverged = error 1)."""
    err = (1.0 - cells["final_test_acc"]).where(cells["status"] == "completed", 1.0)
    return cells.assign(test_error=err)


def _errors(results: Results):
    """Test error per seed (rows) and (norm, batch_size) (columns)."""
    return _with_test_error(results.cells).pivot_table(
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
        rises = f"BN rise {mean_ci(rise_bn).value:+.3f}, GN rise {mean_ci(rise_gn).value:+.3f} (test error)"
        out.append(
            verdict(
                "GN-BATCH",
                f"BN error rise, batch {hi}→{lo}",
                mean_ci(rise_bn),
                "greater",
                detail=rises,
            )
        )
        out.append(
            verdict(
                "GN-BATCH",
                f"BN error rise − GN error rise, batch {hi}→{lo}",
                paired_diff_ci(rise_bn, rise_gn),
                "greater",
                detail="the claim needs both rows: BN's own rise, and a rise beyond GN's",
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
    """One panel per norm: test error vs batch size, t-CI band over seeds; BN dashed for reference."""
    cells = results.cells
    missing = require_columns(
        cells, ["norm", "batch_size", "final_test_acc", "seed", "status"], "cells"
    )
    if missing:
        return missing_figure("test error vs batch size", missing)
    summary = summarize_ci(_with_test_error(cells), ["norm", "batch_size"], "test_error")
    order = norm_order(summary["norm"].unique())
    palette, sizes = norm_palette(order), sorted(summary["batch_size"].unique())
    ncols = len(order) if len(order) <= 5 else 4
    nrows = -(-len(order) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), sharex=True, sharey=True, squeeze=False
    )
    reference = summary[summary["norm"] == "batch"]
    for ax, norm in zip(axes.flat, order):
        if len(reference) and norm != "batch":
            ax.plot(
                reference["batch_size"],
                reference["mean"],
                "--",
                color="gray",
                label="batch (reference)",
            )
        ci_line(
            ax,
            summary[summary["norm"] == norm],
            "batch_size",
            color=palette[norm],
            label=norm,
            clip=(0, 1),
        )
        ax.set_title(norm)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, labels=[str(b) for b in sizes])
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(order) :]:
        ax.set_axis_off()
    for ax in axes[:, 0]:
        ax.set_ylabel("test error (fraction)")
    for ax in axes[-1, :]:
        ax.set_xlabel("batch size (log scale)")
    n_seeds = int(summary["n"].max())
    fig.suptitle(
        f"Test error vs batch size at equal examples seen (mean, 95% t-CI over {n_seeds} seeds; gray dashed = BN)"
    )
    fig.tight_layout()
    return fig


STUDY = Study(
    name="batch_size",
    title="Test error vs batch size for every normalization scheme",
    claims=("GN-BATCH", "WS-MICRO", "FRN-BATCH", "BGN-TINY"),
    profiles={
        "quick": Profile(
            Grid(BASE, {"norm": CLAIM_NORMS, "batch_size": (2, 8, 32)}),
            seeds=3,
            description="the five norms the claims compare, 3 batch sizes, 3 seeds, ≈3 min on 2 CPU cores",
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
