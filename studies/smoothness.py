"""Does normalization make the loss landscape smoother along the gradient?

Claims (``CLAIMS.md``; registered tests in ``normtheory/claims.toml``):
- BN-SMOOTH (Santurkar et al. 2018): along w(η) = w − η·g, η ∈ [½, 4] × the training LR, BN gives
  a narrower loss range, smaller gradient predictiveness ‖∇L(w) − ∇L(w(η))‖ and smaller effective
  β-smoothness max_η ‖∇L(w) − ∇L(w(η))‖ / ‖η·g‖ than the same net without BN.
  Statistics, one value per seed, each a mean over the measured steps of a log gap no-BN − BN:
  ``log_beta_gap`` (primary), ``log_loss_range_gap`` and ``log_grad_pred_gap``; all > 0.
- WS-SMOOTH (Qiao et al. 2019): GN+WS has smaller effective β-smoothness and top Hessian
  eigenvalue than GN alone at the same point in training. Per seed, mean over steps of
  ``log_beta_gap`` = log β(GN) − log β(GN+WS) > 0 and ``log_eig_gap`` = log λ_max(GN) −
  log λ_max(GN+WS) > 0.
Check ``both_trained`` (each claim): the smaller of the two compared nets' mean final test
accuracy over seeds (a run that diverged counts as accuracy 0): a landscape of a net that did not
train says nothing.

Protocol (the paper used VGG on CIFAR-10, SGD, LR 0.1, batch 128, no augmentation): a VGG-style
stack of 3×3 convolutions on the 8×8 digits, plain SGD at the same learning rate for every norm,
train-mode measurements on a fixed probe batch every few steps (the same batch and the same
dropout masks at every point of a measurement). With several learning rates (``full``), a seed's
value is the mean of its per-LR gaps.
"""

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from normtheory.experiment import TrainCell
from normtheory.hooks import HessianSpectrum, LossAccuracy, Smoothness
from normtheory.report.data import attach_data
from normtheory.report.figures import ci_line, norm_order, norm_palette, summarize_ci
from normtheory.study import Grid, Profile, Results, Study
from normtheory.verdicts import CheckValue, sample

BASE = TrainCell(
    dataset="digits",
    arch="convnet",
    width=16,
    depth=6,
    groups=4,
    optimizer="sgd",
    lr=0.05,
    momentum=0.0,
    batch_size=64,
    steps=300,
)
NAMES = {"none": "no norm", "batch": "BN", "group": "GN", "group+ws": "GN + WS"}
# claim -> (worse, better, {registered statistic: (metric, key)})
TESTS = {
    "BN-SMOOTH": (
        "none",
        "batch",
        {
            "log_beta_gap": ("smoothness.beta", ""),
            "log_loss_range_gap": ("smoothness.loss_range", ""),
            "log_grad_pred_gap": ("smoothness.grad_pred_max", ""),
        },
    ),
    "WS-SMOOTH": (
        "group",
        "group+ws",
        {"log_beta_gap": ("smoothness.beta", ""), "log_eig_gap": ("hessian.eig", "1")},
    ),
}


def hooks(cell: TrainCell):
    every = max(cell.steps // 12, 1)
    return [
        LossAccuracy(every=10),
        Smoothness(every=every),
        HessianSpectrum(k=1, every=max(cell.steps // 4, 1), at_end=True),
    ]


def per_seed_log_gap(records, metric: str, key: str, worse: str, better: str) -> pd.Series:
    """Per seed: mean over (learning rate, measured step) of log metric[worse] − log
    metric[better]."""
    rows = records[
        (records["metric"] == metric)
        & (records["key"] == key)
        & records["norm"].isin([worse, better])
    ]
    table = rows.pivot_table(index=["seed", "lr", "step"], columns="norm", values="value").dropna()
    if worse not in table or better not in table:
        return pd.Series(dtype=float)
    gap = np.log(table[worse].where(table[worse] > 0)) - np.log(
        table[better].where(table[better] > 0)
    )
    return gap.groupby(level="seed").mean()


def mean_accuracy(cells: pd.DataFrame) -> pd.Series:
    """Mean final test accuracy over seeds, per norm; a run that did not complete counts as 0."""
    acc = cells.get("final_test_acc", pd.Series(np.nan, cells.index))
    acc = acc.where(cells["status"] == "completed").fillna(0.0)
    return acc.groupby(cells["norm"]).mean()


def statistics(results: Results):
    out, acc = [], mean_accuracy(results.cells)
    for claim, (worse, better, stats) in TESTS.items():
        pair = f"{NAMES[worse]}/{NAMES[better]}"
        for name, (metric, key) in stats.items():
            gap = per_seed_log_gap(results.records, metric, key, worse, better)
            if gap.empty:
                continue
            what = PANELS[metric][0][0].lower() + PANELS[metric][0][1:]
            ratio = np.exp(gap.mean())
            detail = f"{what}: ratio {pair} ×{ratio:.3g} (geometric mean over steps and seeds)"
            out.append(sample(claim, name, gap, detail=detail))
        if worse in acc and better in acc:
            detail = "mean final test accuracy " + ", ".join(
                f"{NAMES[n]} {acc[n]:.3f}" for n in (worse, better)
            )
            out.append(CheckValue(claim, "both_trained", min(acc[worse], acc[better]), detail))
    return out


PANELS = {
    "smoothness.loss_range": ("Loss range along −g", "max L − min L"),
    "smoothness.grad_pred_max": ("Gradient predictiveness", "max ‖∇L(w) − ∇L(w − ηg)‖"),
    "smoothness.beta": ("Effective β-smoothness", "β (max over η)"),
    "hessian.eig": ("Top Hessian eigenvalue", "λ_max"),
}


def landscape(results: Results):
    """2×2 panels, one per measure: geometric mean over seeds (95 % t-CI, log space) vs step."""
    rec = results.records
    norms = norm_order(rec["norm"].dropna().unique())
    palette = norm_palette(norms)
    fig, axes = plt.subplots(2, 2, figsize=(9.5, 7.2))
    drawn = []
    for ax, (metric, (title, ylabel)) in zip(axes.flat, PANELS.items()):
        rows = rec[(rec["metric"] == metric) & rec["key"].isin(["", "1"])]
        ax.set(title=title, xlabel="training step", ylabel=f"{ylabel} (log)")
        if rows.empty:
            ax.text(
                0.5, 0.5, f"missing: {metric}", ha="center", color="crimson", transform=ax.transAxes
            )
            continue
        for norm in norms:
            sub = rows[rows["norm"] == norm]
            if len(sub):
                per_seed = sub.groupby(["step", "seed"], as_index=False)["value"].mean()
                summary = summarize_ci(per_seed, ["step"], "value", log=True)
                ci_line(
                    ax,
                    summary,
                    "step",
                    color=palette[norm],
                    label=NAMES.get(norm, norm),
                    markersize=3,
                )
                drawn.append(summary.assign(metric=metric, norm=norm))
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    legend = {lab: h for ax in axes.flat for h, lab in zip(*ax.get_legend_handles_labels())}
    fig.legend(
        legend.values(),
        legend.keys(),
        title="normalization",
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
    )
    n = rec["seed"].nunique()
    fig.suptitle(
        "Loss landscape along the gradient, η ∈ [0.5, 4]×LR, train mode\n"
        f"(geometric mean, 95% t-CI over {n} seeds)"
    )
    fig.tight_layout()
    return attach_data(fig, pd.concat(drawn, ignore_index=True)) if drawn else fig


STUDY = Study(
    name="smoothness",
    title="Loss-landscape smoothness along the gradient, with and without BN and WS",
    claims=("BN-SMOOTH", "WS-SMOOTH"),
    profiles={
        "quick": Profile(
            Grid(BASE, {"norm": ("none", "batch", "group", "group+ws")}),
            seeds=5,
            description="300 steps, 5 seeds",
        ),
        "full": Profile(
            Grid(
                BASE,
                {"norm": ("none", "batch", "group", "group+ws"), "lr": (0.05, 0.1)},
            ),
            seeds=5,
            description="2 learning rates, 5 seeds",
        ),
    },
    hooks=hooks,
    statistics=statistics,
    figures={"landscape": landscape},
)
