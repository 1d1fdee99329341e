"""How test error depends on batch size for each normalization scheme, at equal examples seen.

Claims (``CLAIMS.md``; their registered tests are in ``normtheory/claims.toml``). B_min and B_max
are the smallest and largest batch sizes of the grid; every statistic is one value per seed.
- GN-BATCH (Wu & He 2018): BN's error rises sharply as the batch shrinks; GN stays flat.
  ``bn_rise`` = err_BN(B_min) − err_BN(B_max) (claimed > 0) and ``gn_rise``, the same for GN
  (claimed equivalent to 0). Checks: BN at B_max is trained (``bn_trained``, mean test
  accuracy) and its mean rise is there at all (``bn_penalty``): without the cause GN removes,
  the claim cannot be tested.
- WS-MICRO (Qiao et al. 2019): GN+WS at the smallest batch matches or beats BN at the largest.
  ``ws_vs_bn`` = err_GN+WS(B_min) − err_BN(B_max), paired by seed (non-inferiority: < 1 point).
- FRN-BATCH (Singh & Krishnan 2019): FRN+TLU beats GN at small batches.
  ``gn_vs_frn`` = err_GN(B_min) − err_FRN(B_min); check ``frn_trained``: FRN's accuracy there.
Batch-Group Norm is trained too, for the figure: BGN-TINY is tested by the ``batch_group`` study.

Profiles: ``quick`` trains the four norms the claims compare (BN, GN, GN+WS, FRN) and BGN at batch
sizes 2, 8, 32 with 5 seeds; ``full`` adds LN, IN and no norm, batch sizes 1–128 and 5 seeds.

Protocol: a small convnet on sklearn's handwritten digits (8×8), SGD with momentum, the learning
rate scaled linearly with batch size (Goyal et al. 2017, as in the GN paper), and the same number
of training examples for every batch size. The ImageNet numbers are not the target: the verdict
is about the direction and size of the effect at this scale. A diverged or failed cell counts
as test error 1.
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
from normtheory.study import Grid, Profile, Results, Study
from normtheory.verdicts import CheckValue, sample

NORMS = ("batch", "group", "layer", "instance", "group+ws", "frn", "batch_group", "none")
CLAIM_NORMS = ("batch", "group", "group+ws", "frn", "batch_group")  # the claims' norms and BGN
LABELS = {"batch": "BN", "group": "GN", "layer": "LN", "instance": "IN", "group+ws": "GN + WS",
          "frn": "FRN + TLU", "batch_group": "Batch-Group Norm", "none": "no norm"}  # fmt: skip
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


def _with_test_error(cells):
    """The cells with a ``test_error`` column from their final accuracy (diverged = error 1)."""
    err = (1.0 - cells["final_test_acc"]).where(cells["status"] == "completed", 1.0)
    return cells.assign(test_error=err)


def _errors(results: Results):
    """Test error per seed (rows) and (norm, batch_size) (columns)."""
    return _with_test_error(results.cells).pivot_table(
        index="seed", columns=["norm", "batch_size"], values="test_error"
    )


def statistics(results: Results):
    err = _errors(results)
    sizes = sorted(err.columns.get_level_values("batch_size").unique())
    lo, hi = sizes[0], sizes[-1]
    e = {key: err[key] for key in err.columns}  # (norm, batch size) -> test error per seed

    def means(*keys):
        return "test error " + ", ".join(f"{LABELS[n]}@{b} {e[n, b].mean():.3f}" for n, b in keys)

    out = []
    if lo < hi and {("batch", lo), ("batch", hi)} <= e.keys():
        bn_rise = e["batch", lo] - e["batch", hi]
        bn_acc = 1 - e["batch", hi].mean()
        out += [
            sample("GN-BATCH", "bn_rise", bn_rise, detail=means(("batch", lo), ("batch", hi))),
            CheckValue("GN-BATCH", "bn_trained", bn_acc, f"BN@{hi}"),
            CheckValue("GN-BATCH", "bn_penalty", bn_rise.mean(), f"BN, batch {hi}→{lo}"),
        ]
        if {("group", lo), ("group", hi)} <= e.keys():
            gn_rise = e["group", lo] - e["group", hi]
            out.append(
                sample("GN-BATCH", "gn_rise", gn_rise, detail=means(("group", lo), ("group", hi)))
            )
        if ("group+ws", lo) in e:
            gap = e["group+ws", lo] - e["batch", hi]
            out += [
                sample("WS-MICRO", "ws_vs_bn", gap, detail=means(("group+ws", lo), ("batch", hi))),
                CheckValue("WS-MICRO", "bn_trained", bn_acc, f"BN@{hi}"),
            ]
    if {("group", lo), ("frn", lo)} <= e.keys():
        frn = err.xs("frn", axis=1, level="norm").mean()
        spread = f"FRN {frn.min():.3f}–{frn.max():.3f} over all batch sizes"
        detail = f"{means(('group', lo), ('frn', lo))}; {spread}"
        out += [
            sample("FRN-BATCH", "gn_vs_frn", e["group", lo] - e["frn", lo], detail=detail),
            CheckValue("FRN-BATCH", "frn_trained", 1 - e["frn", lo].mean(), f"FRN@{lo}"),
        ]
    return out


def error_vs_batch(results: Results):
    """One panel per norm (three to a row): test error vs batch size, t-CI band over seeds; BN
    dashed gray in every other panel for reference."""
    cells = results.cells
    missing = require_columns(
        cells, ["norm", "batch_size", "final_test_acc", "seed", "status"], "cells"
    )
    if missing:
        return missing_figure("test error vs batch size", missing)
    summary = summarize_ci(_with_test_error(cells), ["norm", "batch_size"], "test_error")
    order = norm_order(summary["norm"].unique())
    palette, sizes = norm_palette(order), sorted(summary["batch_size"].unique())
    ncols = min(3, len(order))
    nrows = -(-len(order) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), sharex=True, sharey=True, squeeze=False
    )
    reference = summary[summary["norm"] == "batch"]
    for ax, norm in zip(axes.flat, order):
        if len(reference) and norm != "batch":
            ref = reference["batch_size"], reference["mean"]
            ax.plot(*ref, "--", color="gray", label="BN (reference)")
        label, rows = LABELS.get(norm, norm), summary[summary["norm"] == norm]
        ci_line(ax, rows, "batch_size", color=palette[norm], label=label, clip=(0, 1))
        ax.set_title(label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, labels=[str(b) for b in sizes])
        ax.grid(alpha=0.3)
    legend = {}  # label -> handle, across panels
    for i, ax in enumerate(axes.flat[: len(order)]):
        for handle, text in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(text, handle)
        if i + ncols >= len(order):  # the lowest panel of its column
            ax.set_xlabel("batch size (log scale)")
            ax.xaxis.set_tick_params(labelbottom=True)
    spare = axes.flat[len(order) :]
    for ax in spare:
        ax.set_axis_off()
    where = spare[0] if len(spare) else axes.flat[-1]
    where.legend(legend.values(), legend.keys(), loc="center" if len(spare) else "best")
    for ax in axes[:, 0]:
        ax.set_ylabel("test error (fraction)")
    n_seeds = int(summary["n"].max())
    fig.suptitle(
        f"Test error vs batch size at equal examples seen\n(mean, 95% t-CI over {n_seeds} seeds)"
    )
    fig.tight_layout()
    return fig


STUDY = Study(
    name="batch_size",
    title="Test error vs batch size for every normalization scheme",
    claims=("GN-BATCH", "WS-MICRO", "FRN-BATCH"),
    profiles={
        "quick": Profile(
            Grid(BASE, {"norm": CLAIM_NORMS, "batch_size": (2, 8, 32)}),
            seeds=5,
            description="the four norms the claims compare and BGN, 3 batch sizes, 5 seeds, "
            "≈5 min on 2 CPU cores",
        ),
        "full": Profile(
            Grid(BASE, {"norm": NORMS, "batch_size": (1, 2, 4, 8, 16, 32, 64, 128)}),
            seeds=5,
            description="8 batch sizes, 5 seeds",
        ),
    },
    statistics=statistics,
    figures={"error_vs_batch": error_vs_batch},
)
