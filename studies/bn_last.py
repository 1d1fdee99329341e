"""One BN layer at the end of a ResNet: how large a learning rate, and how accurate?

Claim BN-LAST (Bjorck et al. 2018, "Understanding Batch Normalization"; ``CLAIMS.md``, registered
test in ``normtheory/claims.toml``): a ResNet with a single BN layer after its last residual block
trains at much larger learning rates than the same net without BN and reaches a higher test
accuracy. The one BN (``placement="last"``: the net without norms, biases on, plus ``norm_last``
on the features before the pooling) against no BN, and the fully normalized net for context.
Statistics, one value per seed: ``log10_lr_ratio`` = log10(max stable LR BN last / no BN) (> 0,
SESOI log10 3), each found by bisection in log(LR) as in ``lr_stability`` (`normtheory.stability`:
bracket [0.2, 20] verified first, an end that fails moved out by 10^0.5 at most 4 times, halved to
a bracket narrower than 10^0.1; estimate its geometric midpoint), and ``acc_gain`` = the test
accuracy of the probe at the largest stable LR found (the final bracket's lower end), BN last −
no BN (> 0, SESOI 0.005); rule all. Secondary ``log10_lr_ratio_full`` = log10(max stable LR full
BN / BN last) where full BN runs. *Stable*: no divergence and a final training loss (mean over the
last 10 % of steps) below ln(10)/10 on the digits, ln(10)/4 on Fashion-MNIST and CIFAR-10, whose
nets end higher after a short probe (as ``lr_stability``'s standard profile). Check
``bracketed``: every BN-last and no-BN search found a stable and an unstable rate.

Protocol: plain SGD (no momentum), batch 64, He-initialized ResNet. ``quick``: ResNet-8 (width 8)
on the digits, 150 steps per probe, BN last and no BN, 5 seeds. Explored before registration on
the net without BN alone (200 steps): stable at LR 0.2 and 0.6, not at 2.0 (loss at chance),
diverged at 6.0, so the bracket [0.2, 20] finds its limit. ``standard``: Fashion-MNIST (20 000
training examples), ResNet-8 width 16, 940 steps per probe (3 epochs), BN last, no BN and full BN,
5 seeds. ``paper``: Bjorck's setting — ResNet-110 (width 16) on CIFAR-10 with crops and flips,
batch 128, 1950 steps per probe (5 epochs), the three nets, 5 seeds.
"""

import dataclasses
import math

import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from normtheory import plots
from normtheory.evidence import CheckValue, sample
from normtheory.experiment import PAPER_DATA, STANDARD_DATA, TrainCell, cell_data, run_train_cell
from normtheory.hooks import LossAccuracy
from normtheory.results import Results
from normtheory.stability import PROBE, StabilityRule, lr_search, max_stable_lr, probe_table
from normtheory.study import Grid, Profile, Study

BASE = TrainCell(dataset="digits", arch="resnet", width=8, depth=8, optimizer="sgd", lr=0.2,
                 momentum=0.0, batch_size=64, steps=150)  # fmt: skip
SEARCH = dict(lo=0.2, hi=20.0, resolution=0.1, widen=0.5, max_widen=4)
LAST, NONE, FULL = "BN last", "no BN", "full BN"
CASES = {
    LAST: {"tag": LAST, "norm": "batch", "placement": "last"},
    NONE: {"tag": NONE, "norm": "none"},
    FULL: {"tag": FULL, "norm": "batch"},
}
ORDER = [LAST, NONE, FULL]
COLORS = {LAST: plots.norm_palette(["batch"])["batch"], NONE: plots.norm_palette(["none"])["none"],
          FULL: plots.norm_palette(["ghost_batch"])["ghost_batch"]}  # fmt: skip
# The stability threshold is ln K / SHARE[dataset]: a net that trains well ends far lower on the
# digits than on Fashion-MNIST or CIFAR-10 after a short probe (`lr_stability`).
SHARE = {"digits": 10.0, "fashion_mnist": 4.0, "cifar10": 4.0}
STANDARD = dataclasses.replace(BASE, **STANDARD_DATA, width=16, steps=940)
PAPER = dataclasses.replace(BASE, **PAPER_DATA, width=16, depth=110, batch_size=128, steps=1950)


def hooks(cell: TrainCell):
    return [LossAccuracy(every=1)]


def run_cell(cell: TrainCell, seed: int, *, hooks=(), **kw):
    """One (net, seed): the bisection for its max stable LR, every probe a full run."""
    rule = StabilityRule.for_classes(cell_data(cell)[0].num_classes, SHARE.get(cell.dataset, 10.0))
    train_at = lambda lr: run_train_cell(dataclasses.replace(cell, lr=lr), seed, hooks=hooks, **kw)  # noqa: E731
    return lr_search(train_at, rule, train_loss=LossAccuracy.TRAIN_LOSS, **SEARCH)


def at_largest_stable(records: pd.DataFrame) -> pd.DataFrame:
    """Per tag × seed, the probe at the largest LR found stable (the final bracket's lower end):
    its ``lr`` and ``test_acc``."""
    table = probe_table(records, by="tag") if len(records) else pd.DataFrame()
    if table.empty:
        return pd.DataFrame(columns=["tag", "seed", "lr", "test_acc"])
    stable = table[table["stable"]].sort_values("lr")
    return stable.groupby(["tag", "seed"], as_index=False).last()[["tag", "seed", "lr", "test_acc"]]


def statistics(results: Results):
    cells = results.cells
    if "final_max_stable_lr" not in cells or not {LAST, NONE} <= set(cells["tag"]):
        return []
    lr_max = max_stable_lr(cells, by="tag")
    pair = cells[cells["tag"].isin([LAST, NONE]) & (cells["status"] == "completed")]
    bracketed = pair["final_bracketed"] == 1
    width = float(pair["final_bracket_width"].max()) if bracketed.any() else 0.0
    resolution = math.sqrt(2) * width
    parts = [f"{t} {', '.join(f'{v:.3g}' for v in lr_max[t])}" for t in ORDER if t in lr_max]
    detail = f"max stable LR per seed: {'; '.join(parts)} (widest final bracket ×{10**width:.3g})"
    acc = at_largest_stable(results.records).pivot(index="seed", columns="tag", values="test_acc")
    acc = acc.reindex(index=lr_max.index, columns=ORDER)  # NaN: no stable probe
    acc_detail = "test accuracy at the largest stable LR, mean over seeds: " + ", ".join(
        f"{t} {acc[t].mean():.3f}" for t in ORDER if acc[t].notna().any()
    )
    out = [
        sample("BN-LAST", "log10_lr_ratio", np.log10(lr_max[LAST] / lr_max[NONE]),
               resolution=resolution, detail=detail),
        sample("BN-LAST", "acc_gain", acc[LAST] - acc[NONE], detail=acc_detail),
        CheckValue("BN-LAST", "bracketed", float(bracketed.mean()),
                   f"{int(bracketed.sum())} of {len(pair)} BN-last and no-BN searches bracketed"),
    ]  # fmt: skip
    if FULL in lr_max:
        out.append(sample("BN-LAST", "log10_lr_ratio_full", np.log10(lr_max[FULL] / lr_max[LAST]),
                          resolution=resolution, detail=detail))  # fmt: skip
    return out


def stability(results: Results):
    """Left: every probe, final training loss vs LR (● stable, × unstable; diverged and
    losses above 10 × chance on the dotted line), the threshold and each seed's max stable LR
    as a tick. Right: test accuracy of every stable probe vs its LR."""
    table = probe_table(results.records, by="tag") if len(results.records) else pd.DataFrame()
    if table.empty:
        return plots.missing_figure("stability", [f"{PROBE}* records"])
    cells = results.cells
    threshold = float(cells["final_stability_threshold"].max())
    top = 100 * threshold
    fig, axes = plots.panels(2)
    for tag in [t for t in ORDER if t in set(table["tag"])]:
        mine, color = table[table["tag"] == tag], COLORS[tag]
        loss = mine["train_loss"].fillna(top).clip(upper=top)
        plots.outcome_points(axes[0], mine["lr"], loss, mine["stable"], color=color, sizes=(22, 22))
        lr_max = cells.loc[cells["tag"] == tag, "final_max_stable_lr"].dropna()
        axes[0].plot(lr_max, [1.7 * top] * len(lr_max), "|", color=color, ms=14, mew=2)
        axes[0].plot([], [], "s", color=color, label=tag)
        ok = mine[mine["stable"]]
        axes[1].plot(ok["lr"], ok["test_acc"], "o", color=color, alpha=0.7, label=tag)
    for marker, what in (("o", "stable probe"), ("x", "unstable probe"), ("|", "max stable LR")):
        axes[0].plot([], [], marker, color="gray", ls="none", mew=2, label=what)
    axes[0].axhline(threshold, color="gray", ls="--", lw=1, label=f"stable: loss < {threshold:.3g}")
    axes[0].axhline(top, color="gray", ls=":", lw=1, label=f"NaN or loss > {top:.0f}")
    axes[0].set(xscale="log", yscale="log", ylabel="final training loss (log)")
    axes[1].set(xscale="log", ylabel="test accuracy", xlim=axes[0].get_xlim())
    axes[1].xaxis.set_minor_formatter(NullFormatter())  # unlabelled minor ticks: no overlap
    n, steps = cells["seed"].nunique(), cells["steps"].max()
    plots.finish(fig, axes, title=f"One BN after the last residual block vs none: LR bisection, "
                 f"{steps} SGD steps per probe, {n} seeds",
                 titles=["Every probe of the searches", "Test accuracy of the stable probes"],
                 xlabel="learning rate (log)")  # fmt: skip
    return plots.attach_data(fig, table)


def _profile(base, tags, seeds, description, cost="", smoke=None):
    return Profile(Grid(base, cases=tuple(CASES[t] for t in tags)), seeds=seeds,
                   description=description, cost=cost, smoke=smoke or {})  # fmt: skip


STUDY = Study(
    name="bn_last",
    title="A single BN after the last residual block: stable learning rates and accuracy",
    claims=("BN-LAST",),
    reference=("quick", "standard"),
    profiles={
        "quick": _profile(
            BASE,
            [LAST, NONE],
            5,
            "digits, ResNet-8 width 8, BN last and no BN, "
            "bisection, 150 SGD steps per probe, 5 seeds",
        ),
        "full": _profile(
            BASE,
            ORDER,
            5,
            "digits, ResNet-8 width 8, BN last, no BN and full BN, "
            "bisection, 150 steps per probe, 5 seeds",
        ),
        "standard": _profile(
            STANDARD,
            ORDER,
            5,
            "Fashion-MNIST (20 000), ResNet-8 width 16, BN "
            "last, no BN, full BN, bisection, 940 steps per probe, 5 seeds",
            cost="≈50 min on 2 CPU cores (measured: 15 runs, 1.5 h of single-core run time, 2–10 min per run; a search bisects ≈8 probes of 940 steps)",
        ),
        "paper": _profile(
            PAPER,
            ORDER,
            5,
            "CIFAR-10, ResNet-110, batch 128, BN last, no BN, "
            "full BN, bisection, 1950 steps per probe, 5 seeds",
            cost="≈3 h on one GPU (≈120 probes of 1950 steps; an estimate, not timed)",
            smoke={"batch_size": 16, "max_train": 16, "steps": 2, "width": 4, "depth": 8},
        ),
    },  # fmt: skip
    hooks=hooks,
    run_cell=run_cell,
    statistics=statistics,
    figures={"stability": stability},
)
