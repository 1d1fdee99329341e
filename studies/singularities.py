"""Do networks without batch statistics (GN, LN) drift toward elimination singularities, and
does weight standardization keep them away? Dead-channel fraction and StatDiff over training of
a 6-layer convnet on the 8×8 digits: small nets on offline data cannot reproduce the paper's
ImageNet numbers, so the verdict is about the direction and size of the effect at this scale.

Claim (``CLAIMS.md``; Qiao et al. 2019, "Micro-Batch Training with Batch-Channel
Normalization and Weight Standardization", Sec. 3):
- WS-SINGULAR (empirical): with GN or LN (statistics per example, not per channel) a channel's
  statistics over the data are free to drift from zero mean / unit variance, toward elimination
  singularities (channels that the ReLU after the norm switches off for every example); weight
  standardization (zero-mean, unit-norm filters) keeps them near (0, 1), as BN does by design.
  Measured per norm layer on a fixed probe batch (`Singularities`): StatDiff = mean over
  channels of √(μ_c² + (σ_c − 1)²) of the norm's output over examples and positions, and the
  dead-channel fraction. Registered statistics (``normtheory/claims.toml``), paired by seed, each
  claimed > 0: "keeps them away", ``statdiff_gn`` / ``statdiff_ln``, the StatDiff of GN minus
  GN+WS and of LN minus LN+WS, averaged over layers and over the probes of training (step 0
  excluded); "drift", ``drift_gn`` / ``drift_ln``, the change of StatDiff from step 0 to the end,
  GN minus GN+WS and LN minus LN+WS (a gap that is already there at initialization is not a
  drift). Check ``dead_channels``: the largest final dead-channel fraction of a plain GN or LN
  run must be > 0 (the singularity WS is claimed to prevent occurs at this scale).
  The detail gives StatDiff at the start and end, the final dead and off fractions and test
  accuracy per norm, and the relation to final accuracy: Spearman's ρ, across every cell ×
  seed, between the final StatDiff (and the final off fraction) and the test accuracy.

StatDiff is taken on the norm's output after its affine (γ, β), i.e. on what the ReLU sees, so BN
is not pinned to 0: its StatDiff is √(β² + (|γ| − 1)²) averaged over channels, the drift of its
learnt affine alone. At this scale a few hundred steps may be too few for a drift to build up,
and with 8×8 maps a channel is rarely off for a whole image: the off fraction (the mean share of
examples whose map a ReLU zeroes) is the graded version of the dead count.

Protocol: a 6-layer convnet (width 16, W → N → ReLU) on the 8×8 digits, GN with 4 groups
of 4 channels, SGD with momentum 0.9, η = 0.05, batch 32, constant learning rate; norms GN,
GN+WS, LN, LN+WS and BN. `Singularities` probes 256 fixed training examples in train mode
(batch statistics for BN) 17 times over training; `LossAccuracy` records the loss every 10 steps
and the test set every 50. ``quick``: 400 steps, 5 seeds; ``full``: 1500 steps, 8 seeds.
"""

from dataclasses import replace

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from scipy.stats import spearmanr

from normtheory.experiment import TrainCell, probe_batch
from normtheory.hooks import LossAccuracy, Singularities
from normtheory.report.figures import (
    ci_line,
    missing_figure,
    norm_order,
    norm_palette,
    summarize_ci,
)
from normtheory.study import Grid, Profile, Results, Study
from normtheory.verdicts import CheckValue, sample

NORMS = ("group", "group+ws", "layer", "layer+ws", "batch")
PAIRS = (("group", "group+ws"), ("layer", "layer+ws"))
SHORT = {"group": "GN", "group+ws": "GN + WS", "layer": "LN", "layer+ws": "LN + WS", "batch": "BN"}
PROBES = 16  # probes after step 0
BASE = TrainCell(
    dataset="digits",
    arch="convnet",
    width=16,
    depth=6,
    groups=4,
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    batch_size=32,
    steps=400,
    eval_every=50,
)


def hooks(cell: TrainCell):
    every = max(cell.effective_steps // PROBES, 1)
    return [
        LossAccuracy(every=10),
        Singularities(probe=probe_batch(cell, 256), every=every),
    ]


def health(results: Results) -> pd.DataFrame:
    """Layer-mean health per (norm, seed, step): columns ``stat_diff``, ``dead``, ``off``."""
    rec = results.records
    rec = rec[rec["metric"].str.startswith("singular.")]
    if rec.empty:
        return pd.DataFrame(columns=["norm", "seed", "step", "stat_diff", "dead", "off"])
    table = rec.pivot_table(
        index=["norm", "seed", "step"], columns="metric", values="value", aggfunc="mean"
    )
    return table.rename(columns=lambda m: m.removeprefix("singular.")).reset_index()


def per_run(results: Results) -> pd.DataFrame:
    """One row per (norm, seed): StatDiff averaged over training (step > 0), at step 0 and at
    the end, its change ``drift`` (end − step 0), the final dead and off fractions, and the
    final test accuracy (completed runs only)."""
    table = health(results)
    if table.empty:
        return pd.DataFrame()
    later = table[table["step"] > 0].groupby(["norm", "seed"])
    steps = table.sort_values("step").groupby(["norm", "seed"])
    first, last = steps.first(), steps.last()
    runs = pd.DataFrame(
        {
            "stat_diff_mean": later["stat_diff"].mean(),
            "stat_diff_start": first["stat_diff"],
            "stat_diff_final": last["stat_diff"],
            "drift": last["stat_diff"] - first["stat_diff"],
            "dead_final": last["dead"],
            "off_final": last["off"],
        }
    )
    cells = results.cells.set_index(["norm", "seed"])
    ok = cells["status"] == "completed"
    runs["test_acc"] = cells.get("final_test_acc", pd.Series(np.nan, cells.index)).where(ok)
    return runs.reset_index()


def _rho(runs: pd.DataFrame, x: str) -> str:
    """Spearman's ρ between column `x` and the test accuracy across runs, in words."""
    sub = runs[[x, "test_acc"]].dropna()
    if len(sub) < 4 or sub[x].nunique() < 2:
        return "ρ n/a"
    rho, p = spearmanr(sub[x], sub["test_acc"])
    return f"ρ = {rho:+.2f} (p = {p:.2g}, n = {len(sub)})"


def statistics(results: Results):
    """WS-SINGULAR, per seed: ``statdiff_gn`` / ``statdiff_ln``, the StatDiff averaged over
    layers and training of GN − GN+WS / LN − LN+WS; ``drift_gn`` / ``drift_ln``, the same for the
    drift (end − step 0); check ``dead_channels``, the largest final dead-channel fraction among
    the plain GN and LN runs."""
    runs = per_run(results)
    if runs.empty:
        return []
    wide = runs.pivot(index="seed", columns="norm")
    cols = ["stat_diff_start", "stat_diff_final", "dead_final", "off_final", "test_acc"]
    means = runs.groupby("norm")[cols].mean()
    summary = "; ".join(
        f"{SHORT.get(n, n)}: StatDiff {r.stat_diff_start:.3f} at step 0 → {r.stat_diff_final:.3f}, "
        f"dead {r.dead_final:.3f}, off {r.off_final:.3f}, test acc {r.test_acc:.3f}"
        for n, r in means.loc[norm_order(means.index)].iterrows()
    )
    relation = (
        f"Spearman across runs: final StatDiff vs test acc {_rho(runs, 'stat_diff_final')}; "
        f"final off fraction vs test acc {_rho(runs, 'off_final')} (pooled over norms: between-norm "
        "differences and within-norm spread together)"
    )
    detail = f"mean over seeds — {summary}. {relation}"
    out = []
    for plain, ws in PAIRS:
        if plain not in means.index or ws not in means.index:
            continue
        tag = {"group": "gn", "layer": "ln"}[plain]
        out += [
            sample(
                "WS-SINGULAR",
                f"statdiff_{tag}",
                wide["stat_diff_mean"][plain] - wide["stat_diff_mean"][ws],
                detail=detail,
            ),
            sample(
                "WS-SINGULAR",
                f"drift_{tag}",
                wide["drift"][plain] - wide["drift"][ws],
                detail=detail,
            ),
        ]
    plain = runs[runs["norm"].isin([p for p, _ in PAIRS])].dropna(subset=["dead_final"])
    if len(plain):
        worst = plain.loc[plain["dead_final"].idxmax()]
        out.append(
            CheckValue(
                "WS-SINGULAR",
                "dead_channels",
                float(worst["dead_final"]),
                detail=f"largest final dead-channel fraction (mean over layers) of {len(plain)} "
                f"plain GN/LN runs: {SHORT[worst['norm']]}, seed {worst['seed']}",
            )
        )
    return out


def drift(results: Results):
    """StatDiff and the off / dead fractions over training, per norm (layer mean, CI over seeds)."""
    table = health(results)
    if table.empty:
        return missing_figure("drift toward elimination singularities", ["singular.* records"])
    panels = {
        "stat_diff": ("StatDiff  √(μ² + (σ − 1)²)", "Distance of channel statistics from (0, 1)"),
        "off": ("off fraction (examples a ReLU zeroes)", "Channels switched off per example"),
        "dead": ("dead-channel fraction", "Dead channels (off for every example)"),
    }
    order = norm_order(table["norm"].unique())
    palette = norm_palette(order)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, (metric, (label, title)) in zip(axes, panels.items()):
        for norm in order:
            s = summarize_ci(table[table["norm"] == norm], ["step"], metric)
            if len(s):
                color, name = palette[norm], SHORT.get(norm, norm)
                ci_line(ax, s, "step", color=color, label=name, ms=3, clip=(0, None))
        ax.set(xlabel="step", ylabel=label, title=title)
        ax.set_ylim(bottom=0, top=max(ax.get_ylim()[1], 0.01))
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle(
        "Channel statistics of each norm's output (what its ReLU sees) over training: "
        "mean over layers, mean and 95% t-CI over seeds"
    )
    fig.tight_layout()
    return fig


def accuracy_relation(results: Results):
    """Final StatDiff and off fraction against final test accuracy, one point per run."""
    runs = per_run(results)
    runs = runs.dropna(subset=["test_acc"]) if len(runs) else runs
    if runs.empty:
        return missing_figure("StatDiff vs accuracy", ["singular.* records", "final_test_acc"])
    order = norm_order(runs["norm"].unique())
    palette = norm_palette(order)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, x, label, title in (
        (axes[0], "stat_diff_final", "final StatDiff", "Channel statistics vs accuracy"),
        (axes[1], "off_final", "final off fraction", "Switched-off channels vs accuracy"),
    ):
        for norm in order:
            sub = runs[runs["norm"] == norm]
            ax.scatter(sub[x], sub["test_acc"], color=palette[norm], label=SHORT.get(norm, norm))
        ax.set(xlabel=label, title=f"{title}\nSpearman {_rho(runs, x)}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("final test accuracy")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle("Distance from (0, 1) channel statistics vs final test accuracy (one dot per run)")
    fig.tight_layout()
    return fig


STUDY = Study(
    name="singularities",
    title="Elimination singularities: GN and LN with and without WS, and BN",
    claims=("WS-SINGULAR",),
    profiles={
        "quick": Profile(
            Grid(BASE, {"norm": NORMS}),
            seeds=5,
            description="5 norms, depth 6, 400 steps, 5 seeds",
        ),
        "full": Profile(
            Grid(replace(BASE, steps=1500), {"norm": NORMS}),
            seeds=8,
            description="5 norms, depth 6, 1500 steps, 8 seeds",
        ),
    },
    hooks=hooks,
    statistics=statistics,
    figures={"drift": drift, "accuracy_relation": accuracy_relation},
)
