"""Batch-Group Norm (2 examples × 4 channel groups) against BN and GN at batch sizes 1–8, at
equal examples seen, on a small convnet on the 8×8 digits: the verdict is about the direction and
size of the effect at this scale, not about the paper's ImageNet numbers.

Claim (``CLAIMS.md``; its registered test is in ``normtheory/claims.toml``; Zhou et al. 2020,
"Batch Group Normalization"):
- BGN-TINY (empirical): BGN, which pools its statistics over a block of examples × a group of
  channels × all positions (BN, Ghost BN and GN are special cases), beats both BN and GN at very
  small batch sizes. Statistics, paired by seed and each claimed > 0, one row per batch size
  ≤ 8 of the grid (so a reversal at one batch size cannot be averaged away): ``vs_bn`` = err_BN
  − err_BGN and ``vs_gn`` = err_GN − err_BGN; secondary ``vs_bn_pooled``, ``vs_bn`` averaged
  over those batch sizes within each seed. Check ``bn_trained``: BN's test accuracy at the
  largest batch size of the grid (8 in ``quick``, 16 in ``full``). A diverged cell counts as
  error 1, a failed one as missing.

BGN's shape: blocks of 2 examples (``examples_per_group=2``; ``0`` pools the whole batch, the
same thing at batch ≤ 2) × 4 channel groups — the same groups as GN.
The paper's 32 groups, clipped to the 16 channels of this net, would leave one channel per
group, i.e. Ghost BN with 2-example ghost batches, which equals BN at batch ≤ 2: no test of BGN
at all. With 4 groups of 4 channels BGN is exactly GN pooled over 2 examples (at batch 1 it
trains as GN and differs only in using per-group population statistics at test time), so the
comparison isolates what the extra examples in a statistic buy. BN at batch 1 still trains
(statistics over the 8×8 / 4×4 positions of one image) but tests with population statistics it
never trained with: that mismatch is the effect the claim is about.

Protocol: a 3-layer convnet (width 16) on sklearn's 8×8 digits, SGD with momentum 0.9, the
learning rate scaled linearly with batch size from η = 0.1 at batch 8 (Goyal et al. 2017, as in
the GN paper) and decayed by a cosine to 0 (so the final iterate is not dominated by the noise of
batch-1 steps), and the same number of training examples for every batch size (batch 8 takes
1/8 of the steps of batch 1). ``quick``: batch sizes 1, 2, 4, 8, 1600 examples, 6 seeds;
``full``: batch sizes 1–16, 4000 examples, 8 seeds. At equal examples a larger batch takes fewer
steps, so a norm that needs more steps than another loses ground as the batch grows for that
reason too: read the gap per batch size, not only the pooled one.
"""

from dataclasses import replace

import numpy as np
import pandas as pd
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

CLAIM = "BGN-TINY"
NORMS = ("batch", "group", "batch_group")
BGN, RIVALS = "batch_group", {"batch": "BN", "group": "GN"}
LABELS = {**RIVALS, BGN: "Batch-Group Norm"}
SMALL = 8  # the claim's "very small" batch sizes: B <= SMALL
BASE = TrainCell(
    dataset="digits",
    arch="convnet",
    width=16,
    depth=3,
    groups=4,  # GN and BGN: 4 groups of 4 channels
    examples_per_group=2,  # BGN only (BN and GN take no such option)
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    lr_scaling="linear",
    ref_batch=8,
    batch_size=8,  # set by the grid's axis; 8 keeps small `examples=` overrides valid
    schedule="cosine",
    examples=1600,
)


def error_table(results: Results) -> pd.DataFrame:
    """One row per cell × seed with ``test_error``: 1 − final test accuracy; a diverged cell
    counts as error 1, a failed one (an exception, no outcome) as missing."""
    cells = results.cells
    acc = cells.get("final_test_acc", np.nan)
    err = pd.Series(np.nan, index=cells.index)
    err = err.where(cells["status"] != "completed", 1.0 - acc)
    err = err.where(cells["status"] != "diverged", 1.0)
    return cells.assign(test_error=err.astype(float))


def _gaps(results: Results) -> pd.DataFrame:
    """err_X − err_BGN per (seed, batch size) for X in BN, GN: columns ``norm``, ``gap``."""
    err = error_table(results).pivot_table(
        index=["seed", "batch_size"], columns="norm", values="test_error"
    )
    if BGN not in err:
        return pd.DataFrame(columns=["seed", "batch_size", "norm", "gap"])
    rows = [
        pd.DataFrame({"norm": n, "gap": err[n] - err[BGN]}).reset_index()
        for n in RIVALS
        if n in err
    ]
    return pd.concat(rows, ignore_index=True).dropna(subset=["gap"])


def statistics(results: Results):
    errors = error_table(results).dropna(subset=["test_error"])
    means = errors.groupby(["norm", "batch_size"])["test_error"].mean()
    gaps = _gaps(results)
    gaps = gaps[gaps["batch_size"] <= SMALL]
    out = []
    for norm, short in RIVALS.items():
        for b, sub in gaps[gaps["norm"] == norm].groupby("batch_size"):
            detail = f"mean test error {short} {means[norm, b]:.3f}, BGN {means[BGN, b]:.3f}"
            gap = sub.set_index("seed")["gap"]
            out.append(sample(CLAIM, f"vs_{short.lower()}", gap, condition=str(b), detail=detail))
    bn = gaps[gaps["norm"] == "batch"]
    if len(bn):
        # Pool over batch sizes within a seed first: the seeds are the independent samples.
        sizes = ", ".join(map(str, sorted(bn["batch_size"].unique())))
        pooled = bn.groupby("seed")["gap"].mean()
        out.append(sample(CLAIM, "vs_bn_pooled", pooled, detail=f"batch sizes {sizes}"))
    bn_err = errors[errors["norm"] == "batch"]
    if len(bn_err):  # BN at the grid's largest batch: the baseline the claim needs trained
        top = bn_err["batch_size"].max()
        acc = 1 - bn_err.loc[bn_err["batch_size"] == top, "test_error"].mean()
        out.append(CheckValue(CLAIM, "bn_trained", acc, f"BN at batch {top}"))
    return out


def error_vs_batch(results: Results):
    """Left: test error vs batch size per norm; right: the paired gap err_X − err_BGN."""
    cells = results.cells
    missing = require_columns(cells, ["norm", "batch_size", "seed", "status"], "cells")
    if missing or "final_test_acc" not in cells:
        return missing_figure("test error vs batch size", missing or ["final_test_acc"])
    summary = summarize_ci(
        error_table(results).dropna(subset=["test_error"]), ["norm", "batch_size"], "test_error"
    )
    gaps = _gaps(results)
    order = norm_order(summary["norm"].unique())
    palette = norm_palette(order)
    sizes = sorted(summary["batch_size"].unique())
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for norm in order:
        ci_line(
            ax1,
            summary[summary["norm"] == norm],
            "batch_size",
            color=palette[norm],
            label=LABELS[norm],
            clip=(0, 1),
        )
    ax1.set(ylabel="test error (fraction)", title="test error (mean, 95% t-CI over seeds)")
    for norm, short in RIVALS.items():
        sub = gaps[gaps["norm"] == norm]
        if len(sub):
            s = summarize_ci(sub, ["batch_size"], "gap")
            ci_line(ax2, s, "batch_size", color=palette.get(norm), label=f"err {short} − err BGN")
    ax2.axhline(0, color="gray", lw=1, ls="--")
    ax2.set(ylabel="paired error gap (> 0: BGN better)", title="gap to BGN, paired by seed")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, labels=[str(b) for b in sizes])
        ax.set_xlabel("batch size (log scale; equal examples seen)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    n = int(summary["n"].max()) if len(summary) else 0
    fig.suptitle(f"BN, GN and Batch-Group Norm at tiny batch sizes ({n} seeds)")
    fig.tight_layout()
    return fig


STUDY = Study(
    name="batch_group",
    title="Batch-Group Norm vs BN and GN at batch sizes 1–8",
    claims=("BGN-TINY",),
    profiles={
        "quick": Profile(
            Grid(BASE, {"norm": NORMS, "batch_size": (1, 2, 4, 8)}),
            seeds=6,
            description="BN, GN, BGN at batch sizes 1, 2, 4, 8, 1600 examples each, 6 seeds",
        ),
        "full": Profile(
            Grid(replace(BASE, examples=4000), {"norm": NORMS, "batch_size": (1, 2, 4, 8, 16)}),
            seeds=8,
            description="batch sizes 1–16, 4000 examples each, 8 seeds",
        ),
    },
    statistics=statistics,
    figures={"error_vs_batch": error_vs_batch},
)
