"""Does a Post-LN transformer need a learning-rate warm-up because of large early curvature?

Claim POSTLN-WARMUP (Xiong et al. 2020, "On Layer Normalization in the Transformer
Architecture"; ``CLAIMS.md``, registered test in ``normtheory/claims.toml``): at
initialization the gradients (and curvature) of a Post-LN transformer are large near the output
(Theorem 1: ‖∂L/∂W^{2,L}‖_F = O(d√ln d) for Post-LN, O(d√(ln d / L)) for Pre-LN), so large
learning rates are unstable until a warm-up has let them settle; Pre-LN trains without one.
Statistics, one value per seed: ``log10_lr_ratio_pre_post`` = log10(max stable LR Pre-LN /
Post-LN), both without warm-up, > 0; ``log10_lr_gain_warmup_post`` = log10(max stable LR of
Post-LN with / without warm-up) > 0; ``log_eig_ratio_init`` = ln λ_max(Post-LN) −
ln λ_max(Pre-LN) of the whole net at initialization (the same weights), > 0; secondary,
``log_eig_ratio_init_last``, the same for the last block's parameters. Each max stable LR is a
bisection in log(LR) as in ``lr_stability`` (`normtheory.stability`): bracket [3e-3, 3e-1]
verified first (an end that fails moves out by 10^0.5, at most 2 times), halved to narrower
than 10^0.15; stable = no divergence and final training loss (last 10 % of steps) below
ln(10)/10 (digits) or ln(10)/4 (Fashion-MNIST, as ``lr_stability``'s standard tier, and
CIFAR-10). Check
``bracketed``: every Pre-LN, Post-LN and Post-LN + warm-up search was bracketed. RMSNorm
(Pre) and no norm are searched and measured alongside, not tested.

Protocol (quick): a transformer (`normtheory.models.transformer`) on the digits cut into 4
patches of 4×4, width 32, 4 blocks, 4 heads, Adam (β = 0.9, 0.999), batch 64, 120 steps with a
cosine decay; "warm-up" is the 5 % linear warm-up of ``warmup_cosine`` (6 steps). The Hessian's
top eigenvalue (Lanczos, tol 1e-2, train mode, 64 fixed training examples) of the whole net and
of each block, at initialization and after 6, 30 and 120 steps of a run at LR 3e-3 (each
config's schedule). Explored before registering, on the no-norm net only (the one not tested):
at width 32 and depth 4 it trains to a final loss of 0.06 at LR 3e-3 and 0.035 at 1e-2 in 150
steps and diverges at 3e-2 (ln 10 / 10 = 0.23 is then a threshold nets that learn pass);
~70 ms per step on the loaded 2-core machine. ``standard``: Fashion-MNIST (20 000), patches
7×7 (16 tokens), width 64, 6 blocks, 940 steps (3 epochs), 5 seeds. ``paper``: CIFAR-10 with
crops and flips, patches 4×4 (64 tokens), width 192, 6 blocks, 3 heads, 7800 steps (20 epochs
at batch 128), for a GPU.
"""

import dataclasses
import math

import numpy as np
import pandas as pd

from normtheory import plots
from normtheory.analysis import metric, seed_table
from normtheory.evidence import CheckValue, sample
from normtheory.experiment import (
    PAPER_DATA,
    STANDARD_DATA,
    TrainCell,
    cell_data,
    probe_batch,
    run_train_cell,
)
from normtheory.hooks import HessianSpectrum, LossAccuracy, rename
from normtheory.results import Results
from normtheory.stability import PROBE, StabilityRule, lr_search, max_stable_lr, probe_table
from normtheory.study import Grid, Profile, Study

BASE = TrainCell(dataset="digits", arch="transformer", norm="layer", placement="pre_norm",
                 width=32, depth=4, heads=4, patch=4, optimizer="adam", lr=3e-3, momentum=0.0,
                 batch_size=64, steps=120, schedule="cosine")  # fmt: skip
SEARCH = dict(lo=3e-3, hi=0.3, resolution=0.15, widen=0.5, max_widen=2)
SHARE = {"digits": 10.0, "fashion_mnist": 4.0, "cifar10": 4.0}  # threshold ln K / SHARE
PRE, POST, WARM = "pre-LN", "post-LN", "post-LN + warm-up"
CASES = (
    {"tag": PRE, "norm": "layer", "placement": "pre_norm", "schedule": "cosine"},
    {"tag": POST, "norm": "layer", "placement": "post_norm", "schedule": "cosine"},
    {"tag": WARM, "norm": "layer", "placement": "post_norm", "schedule": "warmup_cosine"},
    {"tag": "pre-RMSNorm", "norm": "rms", "placement": "pre_norm", "schedule": "cosine"},
    {"tag": "no norm", "norm": "none", "placement": "pre_norm", "schedule": "cosine"},
)
TESTED = (PRE, POST, WARM)
PROBE_N = 64  # examples of the fixed batch the Hessian is measured on


def groups(cell: TrainCell) -> dict[str, str | None]:
    """The parameter groups whose Hessian is measured: the whole net and each block."""
    return {"all": None, **{f"block{i}": f"blocks.{i}" for i in range(cell.depth)}}


def eig_metric(group: str) -> str:
    return rename(HessianSpectrum.EIG, f"eig_{group}")


def points(cell: TrainCell) -> tuple[int, ...]:
    """The after_step steps of the curvature trajectory: end of the 5 % warm-up, ¼, the end
    (never step 0, whose record would share step 0 with the initialization's)."""
    ends = (round(0.05 * cell.steps), cell.steps // 4, cell.steps)
    return tuple(sorted({n - 1 for n in ends if n >= 2}))


def hooks(cell: TrainCell):
    return [LossAccuracy(every=1)]


def curvature_hooks(cell: TrainCell):
    """λ_max of each group at initialization (start event, step 0) and at `points`."""
    probe, due = probe_batch(cell, PROBE_N), set(points(cell))
    return [LossAccuracy(name="reference", every=10)] + [
        HessianSpectrum(
            name=f"eig_{g}",
            params=p,
            probe=probe,
            tol=1e-2,
            at_start=True,
            every=lambda step: step in due,
        )  # fmt: skip
        for g, p in groups(cell).items()
    ]


def run_cell(cell: TrainCell, seed: int, *, hooks=(), **kw):
    """One config and seed: the bisection for its max stable LR (every probe a run with `hooks`),
    then one run at the reference LR (``cell.lr``) measuring the curvature by layer."""
    rule = StabilityRule.for_classes(cell_data(cell)[0].num_classes, SHARE.get(cell.dataset, 10.0))
    train_at = lambda lr: run_train_cell(dataclasses.replace(cell, lr=lr), seed, hooks=hooks, **kw)  # noqa: E731
    result = lr_search(train_at, rule, train_loss=LossAccuracy.TRAIN_LOSS, **SEARCH)
    reference = run_train_cell(cell, seed, hooks=curvature_hooks(cell), **kw)
    result.records = pd.concat([result.records, reference.records], ignore_index=True)
    return result


def _init_gap(results: Results, group: str) -> pd.Series | None:
    """Per seed ln λ_max(post-LN) − ln λ_max(pre-LN) of `group` at initialization."""
    rows = metric(results.records, eig_metric(group), "1")
    rows = rows[rows["step"] == 0]
    table = seed_table(rows, "value", "tag") if len(rows) else pd.DataFrame()
    if PRE not in table or POST not in table:
        return None
    return (
        np.log(table[POST].where(table[POST] > 0)) - np.log(table[PRE].where(table[PRE] > 0))
    ).dropna()


def statistics(results: Results):
    cells = results.cells
    out = []
    if "final_max_stable_lr" in cells and set(TESTED) <= set(cells["tag"]):
        lr_max = max_stable_lr(cells, by="tag")
        tested = cells[cells["tag"].isin(TESTED) & (cells["status"] == "completed")]
        bracketed = tested["final_bracketed"] == 1
        width = float(tested["final_bracket_width"].max()) if bracketed.any() else 0.0
        shown = "; ".join(f"{t} ×{np.exp(np.log(lr_max[t]).mean()):.3g}" for t in lr_max.columns)
        detail = f"geometric mean max stable LR: {shown} (widest final bracket ×{10**width:.3g})"
        for name, (num, den) in {"log10_lr_ratio_pre_post": (PRE, POST),
                                 "log10_lr_gain_warmup_post": (WARM, POST)}.items():  # fmt: skip
            ratio = np.log10(lr_max[num] / lr_max[den])
            out.append(sample("POSTLN-WARMUP", name, ratio, resolution=math.sqrt(2) * width,
                              detail=f"{num} / {den} ×{10 ** ratio.mean():.3g}; {detail}"))  # fmt: skip
        check = f"{int(bracketed.sum())} of {len(tested)} {', '.join(TESTED)} searches bracketed"
        out.append(CheckValue("POSTLN-WARMUP", "bracketed", float(bracketed.mean()), check))
    last = f"block{int(cells['depth'].max()) - 1}" if "depth" in cells else None
    for name, group in (("log_eig_ratio_init", "all"), ("log_eig_ratio_init_last", last)):
        gap = _init_gap(results, group) if group else None
        if gap is not None:
            what = "whole net" if group == "all" else f"last block ({group})"
            detail = f"λ_max post-LN / pre-LN at initialization, {what}: ×{np.exp(gap.mean()):.3g}"
            out.append(sample("POSTLN-WARMUP", name, gap, detail=detail))
    return out


def stability(results: Results):
    """Every probe of every search: final training loss vs LR (● stable, × unstable; diverged
    runs on the dotted line), the threshold, and each seed's max stable LR as a tick."""
    table = probe_table(results.records, by="tag") if len(results.records) else pd.DataFrame()
    if table.empty:
        return plots.missing_figure("stability", [f"{PROBE}* records"])
    cells = results.cells
    threshold = float(cells["final_stability_threshold"].max())
    top = 100 * threshold
    tags = [c["tag"] for c in CASES if c["tag"] in set(table["tag"])]
    fig, axes = plots.panels(len(tags), sharex=True, sharey=True)
    for ax, (tag, color) in zip(axes, plots.hue_palette(tags, "tag").items()):
        mine = table[table["tag"] == tag]
        loss = mine["train_loss"].fillna(top).clip(upper=top)
        plots.outcome_points(ax, mine["lr"], loss, mine["stable"], color=color, sizes=(22, 22))
        lr_max = cells.loc[cells["tag"] == tag, "final_max_stable_lr"].dropna()
        ax.plot(lr_max, [1.7 * top] * len(lr_max), "|", color=color, ms=14, mew=2)
        ax.axhline(threshold, color="gray", ls="--", lw=1)
        ax.axhline(top, color="gray", ls=":", lw=1)
        ax.set(xscale="log", yscale="log")
    n, steps = cells["seed"].nunique(), cells["steps"].max()
    plots.finish(fig, axes, title=f"Largest stable learning rate (Adam) by bisection, {steps} "
                 f"steps per probe, {n} seeds\n(● stable, × unstable probe; ticks: each seed's "
                 f"estimate; dashed: loss threshold {threshold:.3g}; dotted: NaN or loss > {top:.0f})",
                 titles=tags, xlabel="learning rate (log)", ylabel="final training loss (log)",
                 legend=None)  # fmt: skip
    return plots.attach_data(fig, table)


def curvature(results: Results):
    """λ_max of the whole net and of each block over training at the reference LR, per config
    (mean over seeds, 95 % t-CI band); step 0 is the initialization."""
    records = results.records
    eig = records["metric"].str.fullmatch(r"eig_\w+\.eig") if len(records) else []
    rows = records[eig & (records["key"] == "1")] if len(records) else records
    if rows.empty:
        return plots.missing_figure("curvature by layer", [eig_metric("all")])
    group = rows["metric"].str.slice(4, -4)  # eig_<group>.eig
    last = group[group != "all"].str.slice(5).astype(int).max() if (group != "all").any() else 0
    names = {"all": "whole net", **{f"block{i}": f"block {i}" for i in range(last)}}
    names[f"block{last}"] = f"block {last} (last)"
    steps = rows["step"].where(rows["step"] == 0, rows["step"] + 1)  # after_step s: s + 1 taken
    rows = rows.assign(layer=group.map(names), step=steps)
    tags = [c["tag"] for c in CASES if c["tag"] in set(rows["tag"])]
    order = [n for n in names.values() if n in set(rows["layer"])]
    styles = {t: {"color": c, "marker": "o"} for t, c in plots.hue_palette(tags, "tag").items()}

    def decorate(ax, layer, sub):
        ax.set_yscale("log")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)

    fig = plots.panel_curves(rows, "step", "value", panel="layer", hue="tag", styles=styles,
                             order=order, log=True, decorate=decorate,
                             title="Top Hessian eigenvalue by layer over training, reference LR "
                             f"{results.cells['lr'].min():g}\n(step 0: initialization; mean over "
                             "seeds, 95 % t-CI)", xlabel="optimizer steps taken (symlog)",
                             ylabel="λ_max (log)")  # fmt: skip
    return plots.attach_data(fig, rows)


# Fashion-MNIST: 16 patches of 7×7, width 64, 6 blocks, 3 epochs of 20 000 examples at batch 64.
STANDARD = dataclasses.replace(BASE, **STANDARD_DATA, patch=7, width=64, depth=6, steps=940)
# CIFAR-10 with crops and flips: 64 patches of 4×4, width 192, 6 blocks, 20 epochs at batch 128.
PAPER = dataclasses.replace(BASE, **PAPER_DATA, patch=4, width=192, depth=6, heads=3,
                            batch_size=128, steps=7800)  # fmt: skip
STUDY = Study(
    name="transformer_norms",
    title="Pre-LN vs Post-LN vs RMSNorm vs no norm in a transformer: stable LR and curvature",
    claims=("POSTLN-WARMUP",),
    reference=("quick", "standard"),
    profiles={
        "quick": Profile(
            Grid(BASE, cases=CASES),
            seeds=5,
            description="digits, 5 configs, bisection + curvature by layer, 5 seeds",
        ),
        "standard": Profile(
            Grid(STANDARD, cases=CASES),
            seeds=5,
            description="Fashion-MNIST (20 000), 6 blocks, 940 steps per probe, 5 seeds",
            cost="≈1.5 h on 2 CPU cores (measured: 25 runs in 1 h 28 min, 2.4 h of single-core run time, 2–11 min per search)",
        ),
        "paper": Profile(
            Grid(PAPER, cases=CASES),
            seeds=5,
            description="CIFAR-10, 64 patches, width 192, 6 blocks, 20 epochs per probe, 5 seeds",
            cost="≈4 h on one GPU (estimate, not run)",
            smoke={
                "batch_size": 16,
                "max_train": 16,
                "steps": 2,
                "width": 8,
                "depth": 1,
                "heads": 1,
            },
        ),
    },  # fmt: skip
    hooks=hooks,
    run_cell=run_cell,
    statistics=statistics,
    figures={"stability": stability, "curvature": curvature},
)
