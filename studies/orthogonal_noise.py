"""Does SGD leave the weight component outside the span of a layer's inputs untouched?

Claims (``CLAIMS.md``):
- SPAN-ORTH (exact; Liu et al. 2021): for y = W x (a conv: on its im2col patches) the gradient
  is Σ_n δ_n x_nᵀ, so SGD, with or without momentum, never changes W·P⊥ (P⊥: projector onto the
  complement of the span of every input seen); coupled weight decay λ shrinks it by (1 − ηλ)
  per step; Adam is not bound by the argument. Statistics: ``sgd_drift``, the drift
  ‖(W_t − W_0)P⊥‖ / ‖W_0P⊥‖ under SGD and SGD+momentum (max over steps, seeds, setups);
  ``wd_decay``, the deviation of ‖W_tP⊥‖/‖W_0P⊥‖ from (1 − ηλ)^t under SGD+WD (max); both
  judged against the registered tolerance. ``adam_log_drift`` (secondary), per seed:
  log10(Adam's final drift / 1e-5) in the rotated subspace (teacher data).
- WRS (empirical): rescaling each output row of the BN-fed weight to unit norm after every step
  (SGD, no decay on those weights) removes the orthogonal "noise" as weight decay does and trains
  as well. Statistics per setup, one value per seed: ``log_orth_ratio`` = log(relative orthogonal
  norm, WRS / SGD) < 0; ``orth_vs_wd`` = log(relative orthogonal norm, WRS / WD) ≈ 0 (equivalence);
  ``acc_vs_wd`` = test accuracy WRS − WD, non-inferior with a 1-point
  margin. Checks ``wd_trained``: SGD+WD trains (mean final test accuracy over setups and seeds);
  ``wd_removes``: WD itself lowers the relative orthogonal norm against SGD (else not testable).

Protocol: the first layer of three BN networks whose inputs span a strict subspace: an MLP and a
convnet on the 8×8 digits repeated on 3 channels (a grey image fed to an RGB net: patches span 1 of
3 channel dimensions; blank pixels add more), and an MLP on synthetic "teacher" data lying in a
random 8-dimensional subspace of R³². Five optimizers: SGD, SGD+momentum 0.9, SGD+WD, SGD+WRS
(all η = 0.1, constant) and Adam (η = 1e-3). `OrthogonalWeightNorm` accumulates the span of the
first layer's training inputs (float64 Gram) and records the orthogonal part every 20th of the run.
Final test accuracy follows `normtheory.analysis.FINAL_METRIC_POLICY`. ``standard``: the two
digits setups on Fashion-MNIST (20 000 training examples) instead, and 3125 steps (5 epochs).

``paper`` reproduces Liu et al. 2021, Fig. 1 (VGG16 on CIFAR-10 trained with weight decay and with
WRS) with a VGG-style stand-in (8 convs of 64 channels) on CIFAR-10 with random crop + flip, the
paper's weight decay 5e-4 and batch 128, 3906 steps (10 epochs). Natural images' 3×3 patches span
all 27 input dimensions of the first conv, so that setup tests WRS's accuracy only; the span
claims get real images through an MLP (512 units) on 2 000 CIFAR-10 images without augmentation
(3072 input dimensions > 2 000 examples: a complement of at least 1 072 dimensions), and the
teacher setup as in quick (Adam's drift). 5 seeds.
"""

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from normtheory import plots
from normtheory.analysis import (
    final_outcomes,
    metric,
    pair_means,
    paired,
    seed_gap,
    seed_table,
    slopes,
    wide,
)
from normtheory.claims import get_claim
from normtheory.evidence import CheckValue, Exact, sample
from normtheory.experiment import PAPER_DATA, STANDARD_DATA, TrainCell
from normtheory.hooks import LossAccuracy, OrthogonalWeightNorm, every
from normtheory.models import first_layer
from normtheory.results import Results
from normtheory.stats import mean_ci
from normtheory.study import Grid, Profile, Study, cross

LR, WD = 0.1, 0.01
# plain SGD (no momentum) on the MLP of the first setup; the cases below set the rest
BASE = TrainCell(dataset="digits", arch="mlp", width=64, depth=2, lr=LR, momentum=0.0, steps=400)
SETUPS = (
    {"arch": "mlp", "dataset": "digits", "data_channels": 3, "width": 64, "depth": 2},
    {"arch": "convnet", "dataset": "digits", "data_channels": 3, "width": 16, "depth": 3},
    {"arch": "mlp", "dataset": "teacher", "data_rank": 8, "width": 64, "depth": 2},
)
# Fashion-MNIST (20 000) in place of the digits, 3125 steps (5 epochs at batch 32): long enough for
# WD to shrink W·P⊥ by (1 − ηλ)^3125 ≈ 0.04 (0.67 in quick's 400 steps).
STANDARD_SETUPS = tuple(s | STANDARD_DATA if s["dataset"] == "digits" else s for s in SETUPS)
STANDARD_STEPS = 3125
# CIFAR-10: Liu et al.'s VGG (stand-in) with augmentation, an MLP on 2 000 images (no augmentation:
# every crop would be a new direction), the teacher; batch 128, 10 epochs of CIFAR-10 for all.
PAPER_SETUPS = (
    {"arch": "convnet", **PAPER_DATA, "width": 64, "depth": 8},
    {"arch": "mlp", "dataset": "cifar10", "max_train": 2000, "width": 512, "depth": 2},
    SETUPS[2],
)
PAPER_BASE = replace(BASE, batch_size=128, steps=3906)
OPTIMIZERS = (
    {"tag": "SGD"},
    {"tag": "SGD+momentum", "momentum": 0.9},
    {"tag": "SGD+WD", "weight_decay": WD},
    {"tag": "SGD+WRS", "rescale": True},
    {"tag": "Adam", "optimizer": "adam", "lr": 1e-3},
)
# The paper tier's weight decay is Liu et al.'s 5e-4 (the theory lines read λ from the cells).
PAPER_OPTIMIZERS = tuple(
    {**o, "weight_decay": 5e-4} if "weight_decay" in o else o for o in OPTIMIZERS
)
ORDER = [o["tag"] for o in OPTIMIZERS]
COLORS = plots.hue_palette(ORDER, "tag")
TOL = get_claim("SPAN-ORTH").test.statistic("sgd_drift").sesoi  # registered; drawn in `drift`
ADAM_REF = 1e-5  # Adam's drift is reported in decades above this (the registered statistic)
ORTH = OrthogonalWeightNorm


def hooks(cell: TrainCell):
    schedule = every(max(cell.effective_steps // 20, 1))
    return [
        LossAccuracy(every=schedule),
        OrthogonalWeightNorm(layers=[first_layer(cell.arch)], every=schedule),
    ]


def _setup(frame: pd.DataFrame) -> pd.Series:
    """A readable name of each row's network and data."""
    arch = frame["arch"].map({"mlp": "MLP", "convnet": "Convnet", "resnet": "ResNet"})
    name = arch.fillna(frame["arch"]) + ", " + frame["dataset"]
    rank = frame.get("data_rank", pd.Series(0, index=frame.index)).fillna(0).astype(int)
    chans = frame.get("data_channels", pd.Series(1, index=frame.index)).fillna(1).astype(int)
    name = name.where(rank == 0, name + " of rank " + rank.astype(str))
    return name.where(chans == 1, name + " on " + chans.astype(str) + " channels")


def orth_table(results: Results) -> pd.DataFrame:
    """One row per record of the first layer: setup, tag, seed, updates t, ratio, drift, ...,
    and the theory value (1 − ηλ)^t under SGD+WD."""
    rec = metric(results.records, ORTH.METRICS)
    if rec.empty:
        return pd.DataFrame()
    rec = rec[(rec["key"] == rec["arch"].map(first_layer)) | (rec["metric"] == ORTH.UPDATES)]
    table = wide(rec, ["cell", "seed", "step"], prefix=ORTH.PREFIX).reset_index()
    fields = ["tag", "arch", "dataset", "data_rank", "data_channels", "lr", "weight_decay"]
    table = table.join(rec.drop_duplicates("cell").set_index("cell")[fields], on="cell")
    table["setup"] = _setup(table)
    table["theory"] = (1 - table["lr"] * table["weight_decay"]) ** table["updates"]
    return table


def final_table(results: Results) -> pd.DataFrame:
    """Per cell × seed: setup, tag, test accuracy (`final_outcomes`) and the last relative
    orthogonal norm of the runs that completed."""
    table = orth_table(results)
    if table.empty:
        return pd.DataFrame()
    last = table.sort_values("updates").groupby(["cell", "seed"]).last()["relative"]
    final = final_outcomes(results.cells).join(last, on=["cell", "seed"])
    final["relative"] = final["relative"].where(final["status"] == "completed")
    return final.assign(setup=_setup(final))


def _span_orth(table: pd.DataFrame) -> list:
    out, tags = [], table["tag"]
    sgd = table[tags.isin(["SGD", "SGD+momentum"])].dropna(subset=["drift"])
    if len(sgd):
        worst, dims = sgd.groupby("setup")["drift"].max(), table.groupby("setup")["complement_dim"]
        detail = "; ".join(
            f"{s}: max drift {worst[s]:.2g} (complement dim {dims.last()[s]:.0f})"
            for s in worst.index
        )
        n = sgd["seed"].nunique()
        out.append(Exact("SPAN-ORTH", "sgd_drift", float(worst.max()), n=n, detail=detail))
    wd = table[tags == "SGD+WD"].dropna(subset=["ratio"])
    if len(wd):
        runs = wd.sort_values("updates").groupby(["cell", "seed"])
        fits = slopes(wd, "updates", "ratio", ["cell", "seed"], logy=True, min_points=3)
        est = mean_ci([math.exp(v) for v in fits])  # per-step factor of each run
        shrink = 1 - wd["lr"].iloc[0] * wd["weight_decay"].iloc[0]
        detail = (
            f"fitted per-step factor {est.value:.6f} [{est.low:.6f}, {est.high:.6f}] over "
            f"{est.n} runs vs 1 − ηλ = {shrink:.6f}; ratio after the last step "
            f"{runs['ratio'].last().mean():.3f}"
        )
        dev = float((wd["ratio"] / wd["theory"] - 1).abs().max())
        out.append(Exact("SPAN-ORTH", "wd_decay", dev, n=wd["seed"].nunique(), detail=detail))
    adam = table[tags == "Adam"].dropna(subset=["drift"])
    if len(adam):
        final = adam.sort_values("updates").groupby(["setup", "cell", "seed"])["drift"].last()
        generic = final[[("teacher" in s) for s in final.index.get_level_values("setup")]]
        decades = np.log10(generic.clip(lower=1e-300) / ADAM_REF).groupby(level="seed").mean()
        medians = "; ".join(f"{s}: {v:.2g}" for s, v in final.groupby("setup").median().items())
        detail = (
            f"median final drift — {medians}. On the digits the complement is spanned by "
            "differences of exchangeable coordinates (repeated channels, blank pixels), which "
            "Adam's per-coordinate scaling treats alike, so it stays bound there; in the rotated "
            "subspace it is not."
        )
        out.append(sample("SPAN-ORTH", "adam_log_drift", decades, detail=detail))
    return out


def _wrs(final: pd.DataFrame) -> list:
    ratios, accs = [], []
    for setup, runs in final.groupby("setup"):
        rel, acc = seed_table(runs, "relative", "tag"), seed_table(runs, "test_acc", "tag")
        if (m := pair_means(rel, "SGD+WRS", "SGD")) is not None:
            detail = "relative orthogonal norm ‖WP⊥‖/‖W‖ at the end: "
            detail += f"SGD {m['SGD']:.3f}, SGD+WRS {m['SGD+WRS']:.3f}"
            if (wd := pair_means(rel, "SGD+WD", "SGD")) is not None:
                detail += f", SGD+WD {wd['SGD+WD']:.3f}"
            log_ratio = paired(rel, "SGD+WRS", "SGD", log=True)
            ratios.append(
                sample("WRS", "log_orth_ratio", log_ratio, condition=setup, detail=detail)
            )
            if wd is not None:  # WRS against WD directly: the same level of orthogonal norm
                vs_wd = paired(rel, "SGD+WRS", "SGD+WD", log=True)
                ratios.append(sample("WRS", "orth_vs_wd", vs_wd, condition=setup, detail=detail))
        if (m := pair_means(acc, "SGD+WRS", "SGD+WD")) is not None:
            detail = f"test accuracy WRS {m['SGD+WRS']:.3f}, WD {m['SGD+WD']:.3f}"
            diff = paired(acc, "SGD+WRS", "SGD+WD")
            accs.append(sample("WRS", "acc_vs_wd", diff, condition=setup, detail=detail))
    removes = [seed_gap(r, "relative", "tag", "SGD+WD", "SGD", log=True).mean()
               for _, r in final.groupby("setup")]  # fmt: skip
    if removes:
        detail = "log(relative orthogonal norm WD / SGD), mean over setups: " + ", ".join(
            f"{v:+.3f}" for v in removes
        )
        check_wd = [CheckValue("WRS", "wd_removes", float(np.nanmean(removes)), detail=detail)]
    else:
        check_wd = []
    wd = final[final["tag"] == "SGD+WD"]["test_acc"]
    detail = f"SGD+WD: mean final test accuracy over {len(wd)} setup × seed runs"
    check = [CheckValue("WRS", "wd_trained", float(wd.mean()), detail=detail)] if len(wd) else []
    return ratios + accs + check + check_wd


def statistics(results: Results):
    table = orth_table(results)
    return _span_orth(table) + _wrs(final_table(results)) if len(table) else []


# SGD, SGD+momentum and Adam all sit at 1: distinct markers and dashes keep each visible.
_LINE = {
    "SGD": {"marker": "o", "ms": 7, "mfc": "none", "lw": 2.5},
    "SGD+momentum": {"marker": "x", "ms": 5, "lw": 1.5, "ls": "--"},
    "SGD+WD": {"marker": "o", "ms": 3},
    "SGD+WRS": {"marker": "o", "ms": 3},
    "Adam": {"marker": "s", "ms": 2.5, "lw": 1, "ls": ":"},
}
STYLES = {tag: {"color": COLORS[tag], **_LINE[tag]} for tag in ORDER}


def _per_setup(table: pd.DataFrame, y: str, decorate, title: str, ylabel: str, band=True):
    """`y` over the optimizer steps, one panel per setup, one line per optimizer (geometric mean
    over seeds), with `decorate(ax, setup, rows)` drawing the reference lines."""
    fig = plots.panel_curves(table, "updates", y, panel="setup", hue="tag", styles=STYLES,
                             log=True, band=band, decorate=decorate, title=title,
                             xlabel="optimizer steps t", ylabel=ylabel)  # fmt: skip
    return plots.attach_data(fig, table[["setup", "tag", "seed", "updates", y]])


def orthogonal_component(results: Results):
    """‖W_tP⊥‖/‖W_0P⊥‖ per optimizer and setup, with the theory lines 1 and (1 − ηλ)^t."""
    table = orth_table(results)
    table = table.dropna(subset=["ratio"]) if "ratio" in table else pd.DataFrame()
    if table.empty:
        return plots.missing_figure("orthogonal component", [f"{ORTH.RATIO} records"])

    def theory(ax, setup, rows):
        t = np.linspace(0, rows["updates"].max(), 100)
        wd = rows[rows["tag"] == "SGD+WD"]
        shrink = 1 - (wd["lr"] * wd["weight_decay"]).iloc[0] if len(wd) else 1 - LR * WD
        ax.plot(t, shrink**t, "k--", lw=1, label="theory: (1 − ηλ)^t")
        ax.axhline(1, color="gray", ls=":", lw=1, label="theory: SGD, 1")
        ax.set_yscale("log")

    title = "First layer: weight component outside the span of its inputs (mean, 95% CI over seeds)"
    return _per_setup(table, "ratio", theory, title, "‖W_t P⊥‖ / ‖W_0 P⊥‖ (log)")


def drift(results: Results):
    """‖(W_t − W_0)P⊥‖/‖W_0P⊥‖ per optimizer: rounding level for SGD, large for Adam in a
    rotated subspace."""
    table = orth_table(results)
    table = table[table["drift"] > 0] if "drift" in table else pd.DataFrame()
    if table.empty:
        return plots.missing_figure("drift", [f"{ORTH.DRIFT} records"])

    def tolerance(ax, setup, rows):
        ax.axhline(TOL, color="crimson", ls="--", lw=1, label=f"registered tolerance {TOL:g}")
        ax.set_yscale("log")

    title = "How far each optimizer moves the orthogonal component (geometric mean over seeds)"
    ylabel = "‖(W_t − W_0) P⊥‖ / ‖W_0 P⊥‖ (log)"
    return _per_setup(table, "drift", tolerance, title, ylabel, band=False)


def accuracy(results: Results):
    """Final test accuracy and relative orthogonal norm per optimizer and setup."""
    final = final_table(results)
    if final.empty:
        return plots.missing_figure("accuracy", ["cells with orthogonal-norm records"])
    fig, axes = plots.panels(2, size=(5.5, 3.8))
    setups = sorted(final["setup"].unique())
    positions = {s: i for i, s in enumerate(setups)}
    for ax, y, label in (
        (axes[0], "test_acc", "final test accuracy"),
        (axes[1], "relative", "‖W P⊥‖ / ‖W‖ at the end"),
    ):
        s = plots.summarize_ci(plots.per_seed(final, ["setup", "tag"], y), ["setup", "tag"], y)
        for off, tag in zip(np.linspace(-0.3, 0.3, len(ORDER)), ORDER):
            kw = dict(color=COLORS[tag], label=tag, offset=off, clip=(0, 1))
            plots.ci_points(ax, s[s["tag"] == tag], "setup", positions, **kw)
        ax.set_xticks(range(len(setups)), [s.replace(", ", ",\n", 1) for s in setups])
        ax.set(ylabel=label, xlim=(-0.5, len(setups) - 0.5))
    plots.finish(
        fig,
        axes,
        title="Outcome per optimizer (mean and 95% t-CI over seeds)",
        titles=["Final test accuracy", "Relative orthogonal norm, first layer"],
        legend_title="optimizer",
    )
    return plots.attach_data(fig, final[["setup", "tag", "seed", "test_acc", "relative"]])


STUDY = Study(
    name="orthogonal_noise",
    title="The weight component orthogonal to the input span under SGD, WD, WRS and Adam",
    claims=("SPAN-ORTH", "WRS"),
    reference=("quick", "standard"),
    profiles={
        "quick": Profile(
            Grid(BASE, {}, cross(SETUPS, OPTIMIZERS)),
            seeds=5,
            description="3 setups × 5 optimizers, 400 steps, 5 seeds",
        ),
        "full": Profile(
            Grid(replace(BASE, steps=2000), {}, cross(SETUPS, OPTIMIZERS)),
            seeds=5,
            description="3 setups × 5 optimizers, 2000 steps, 5 seeds",
        ),
        "standard": Profile(
            Grid(replace(BASE, steps=STANDARD_STEPS), {}, cross(STANDARD_SETUPS, OPTIMIZERS)),
            seeds=5,
            description="3 setups (Fashion-MNIST on 3 channels: MLP, convnet; teacher) × 5 "
            "optimizers, 3125 steps, 5 seeds",
            cost="≈1–1.5 h on 2 CPU cores (the 25 MLP runs dominate: their first layer has 2 352 "
            "inputs, whose span OrthogonalWeightNorm updates every step; 10–13 steps/s, 4–5 min a "
            "run, timed on loaded cores; the first estimate of 20 min was wrong)",
        ),
        "paper": Profile(
            Grid(PAPER_BASE, {}, cross(PAPER_SETUPS, PAPER_OPTIMIZERS)),
            seeds=5,
            description="3 setups (CIFAR-10: VGG-style convnet with augmentation, MLP on 2 000 "
            "images; teacher) × 5 optimizers, λ = 5e-4, batch 128, 3906 steps, 5 seeds",
            cost="≈30 min on one H100-class GPU (estimate, not measured: 98 k convnet steps at "
            "≈3 ms and 195 k MLP steps at ≈2 ms, the span tracked at every step)",
            smoke={"batch_size": 16, "max_train": 16, "steps": 2, "width": 4},
        ),
    },
    hooks=hooks,
    statistics=statistics,
    figures={
        "orthogonal_component": orthogonal_component,
        "drift": drift,
        "accuracy": accuracy,
    },
)
