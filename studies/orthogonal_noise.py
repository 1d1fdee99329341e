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
  norm, WRS / SGD) < 0; ``acc_vs_wd`` = test accuracy WRS − WD, non-inferior with a 1-point
  margin. Check ``wd_trained``: SGD+WD trains (mean final test accuracy over setups and seeds).

Protocol: the first layer of three BN networks whose inputs span a strict subspace: an MLP and a
convnet on the 8×8 digits repeated on 3 channels (a grey image fed to an RGB net: patches span 1 of
3 channel dimensions; blank pixels add more), and an MLP on synthetic "teacher" data lying in a
random 8-dimensional subspace of R³². Five optimizers: SGD, SGD+momentum 0.9, SGD+WD, SGD+WRS
(all η = 0.1, constant) and Adam (η = 1e-3). `OrthogonalWeightNorm` accumulates the span of the
first layer's training inputs (float64 Gram) and records the orthogonal part on a schedule.
"""

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from normtheory.claims import get_claim
from normtheory.experiment import TrainCell
from normtheory.hooks import LossAccuracy, OrthogonalWeightNorm
from normtheory.report.figures import missing_figure, summarize_ci
from normtheory.stats import mean_ci
from normtheory.study import Grid, Profile, Results, Study, cross
from normtheory.verdicts import CheckValue, Exact, sample

LR, WD = 0.1, 0.01
BASE = TrainCell(
    dataset="digits",
    arch="mlp",
    norm="batch",
    width=64,
    depth=2,
    optimizer="sgd",
    lr=LR,
    momentum=0.0,
    batch_size=32,
    steps=400,
)
SETUPS = (
    {"arch": "mlp", "dataset": "digits", "data_channels": 3, "width": 64, "depth": 2},
    {"arch": "convnet", "dataset": "digits", "data_channels": 3, "width": 16, "depth": 3},
    {"arch": "mlp", "dataset": "teacher", "data_rank": 8, "width": 64, "depth": 2},
)
OPTIMIZERS = (
    {"tag": "SGD"},
    {"tag": "SGD+momentum", "momentum": 0.9},
    {"tag": "SGD+WD", "weight_decay": WD},
    {"tag": "SGD+WRS", "rescale": True},
    {"tag": "Adam", "optimizer": "adam", "lr": 1e-3},
)
ORDER = [o["tag"] for o in OPTIMIZERS]
COLORS = dict(zip(ORDER, sns.color_palette("colorblind", len(ORDER))))
TOL = get_claim("SPAN-ORTH").test.statistic("sgd_drift").sesoi  # registered; drawn in `drift`
ADAM_REF = 1e-5  # Adam's drift is reported in decades above this (the registered statistic)


def first_layer(arch: str) -> str:
    return {"mlp": "fc1", "convnet": "conv1", "resnet": "stem.conv"}[arch]


def hooks(cell: TrainCell):
    every = max(cell.effective_steps // 20, 1)
    return [
        LossAccuracy(every=every),
        OrthogonalWeightNorm(layers=[first_layer(cell.arch)], every=every),
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
    rec = results.records
    rec = rec[rec["metric"].str.startswith("orth.")].copy()
    if rec.empty:
        return pd.DataFrame()
    rec = rec[(rec["key"] == rec["arch"].map(first_layer)) | (rec["metric"] == "orth.updates")]
    wide = rec.pivot_table(
        index=["cell", "seed", "step"], columns="metric", values="value"
    ).reset_index()
    wide.columns = [c.removeprefix("orth.") for c in wide.columns]
    fields = rec.drop_duplicates("cell").set_index("cell")
    wide = wide.join(
        fields[["tag", "arch", "dataset", "data_rank", "data_channels", "lr", "weight_decay"]],
        on="cell",
    )
    wide["setup"] = _setup(wide)
    wide["theory"] = (1 - wide["lr"] * wide["weight_decay"]) ** wide["updates"]
    return wide


def final_table(results: Results) -> pd.DataFrame:
    """Per cell × seed: setup, tag, final test accuracy and last relative orthogonal norm."""
    cells = results.cells.copy()
    cells["setup"] = _setup(cells)
    table = orth_table(results)
    if table.empty:
        return pd.DataFrame()
    last = table.sort_values("updates").groupby(["cell", "seed"]).last()["relative"]
    cells = cells.join(last.rename("relative"), on=["cell", "seed"])
    return cells[cells["status"] == "completed"]


def _paired(final: pd.DataFrame, column: str, a: str, b: str) -> pd.DataFrame:
    """Columns `a`, `b` of `column`, indexed by (setup, seed); pairs with a missing run dropped."""
    wide = final.pivot_table(index=["setup", "seed"], columns="tag", values=column)
    if a not in wide or b not in wide:
        return wide.iloc[:0, :0]
    return wide[[a, b]].dropna()


def _span_orth(table: pd.DataFrame) -> list:
    out = []
    sgd = table[table["tag"].isin(["SGD", "SGD+momentum"])].dropna(subset=["drift"])
    if len(sgd):
        worst = sgd.groupby("setup")["drift"].max()
        dims = table.groupby("setup")["complement_dim"].last()
        detail = "; ".join(
            f"{s}: max drift {worst[s]:.2g} (complement dim {dims[s]:.0f})" for s in worst.index
        )
        out.append(
            Exact(
                "SPAN-ORTH", "sgd_drift", float(worst.max()), n=sgd["seed"].nunique(), detail=detail
            )
        )
    wd = table[table["tag"] == "SGD+WD"].dropna(subset=["ratio"])
    if len(wd):
        dev = (wd["ratio"] / wd["theory"] - 1).abs()
        rates = [
            math.exp(np.polyfit(g["updates"], np.log(g["ratio"]), 1)[0])
            for _, g in wd.groupby(["cell", "seed"])
            if len(g) > 2
        ]
        est = mean_ci(rates)
        detail = (
            f"fitted per-step factor {est.value:.6f} [{est.low:.6f}, {est.high:.6f}] over "
            f"{est.n} runs vs 1 − ηλ = {1 - LR * WD:.6f}; ratio after the last step "
            f"{wd.sort_values('updates').groupby(['cell', 'seed'])['ratio'].last().mean():.3f}"
        )
        out.append(
            Exact("SPAN-ORTH", "wd_decay", float(dev.max()), n=wd["seed"].nunique(), detail=detail)
        )
    adam = table[table["tag"] == "Adam"].dropna(subset=["drift"])
    if len(adam):
        final = adam.sort_values("updates").groupby(["setup", "cell", "seed"])["drift"].last()
        per_setup = final.groupby("setup").median()
        generic = final[[("teacher" in s) for s in final.index.get_level_values("setup")]]
        decades = np.log10(generic.clip(lower=1e-300) / ADAM_REF).groupby(level="seed").mean()
        detail = (
            "median final drift — "
            + "; ".join(f"{s}: {v:.2g}" for s, v in per_setup.items())
            + (
                ". On the digits the complement is spanned by differences of exchangeable "
                "coordinates (repeated channels, blank pixels), which Adam's per-coordinate "
                "scaling treats alike, so it stays bound there; in the rotated subspace it is not."
            )
        )
        out.append(sample("SPAN-ORTH", "adam_log_drift", decades, detail=detail))
    return out


def _wrs(final: pd.DataFrame) -> list:
    out = []
    if final.empty:
        return out
    rel = _paired(final, "relative", "SGD+WRS", "SGD")
    wd_rel = _paired(final, "relative", "SGD+WD", "SGD")
    for setup, pairs in rel.groupby(level="setup"):
        pairs = pairs.droplevel("setup")
        detail = (
            f"relative orthogonal norm ‖WP⊥‖/‖W‖ at the end: SGD {pairs['SGD'].mean():.3f}, "
            f"SGD+WRS {pairs['SGD+WRS'].mean():.3f}"
        )
        if len(wd_rel) and setup in wd_rel.index.get_level_values("setup"):
            detail += f", SGD+WD {wd_rel.xs(setup, level='setup')['SGD+WD'].mean():.3f}"
        log_ratio = np.log(pairs["SGD+WRS"] / pairs["SGD"])
        out.append(sample("WRS", "log_orth_ratio", log_ratio, condition=setup, detail=detail))
    acc = _paired(final, "final_test_acc", "SGD+WRS", "SGD+WD")
    for setup, pairs in acc.groupby(level="setup"):
        pairs = pairs.droplevel("setup")
        detail = f"test accuracy WRS {pairs['SGD+WRS'].mean():.3f}, WD {pairs['SGD+WD'].mean():.3f}"
        diff = pairs["SGD+WRS"] - pairs["SGD+WD"]
        out.append(sample("WRS", "acc_vs_wd", diff, condition=setup, detail=detail))
    wd = final[final["tag"] == "SGD+WD"]["final_test_acc"]
    if len(wd):
        detail = f"SGD+WD: mean final test accuracy over {len(wd)} setup × seed runs"
        out.append(CheckValue("WRS", "wd_trained", float(wd.mean()), detail=detail))
    return out


def statistics(results: Results):
    table = orth_table(results)
    if table.empty:
        return []
    return _span_orth(table) + _wrs(final_table(results))


def _panels(table: pd.DataFrame, height: float = 3.6):
    setups = sorted(table["setup"].unique())
    fig, axes = plt.subplots(1, len(setups), figsize=(4.3 * len(setups), height), squeeze=False)
    return fig, dict(zip(setups, axes[0]))


# SGD, SGD+momentum and Adam all sit at 1: distinct markers and dashes keep each visible.
_LINE = {
    "SGD": {"marker": "o", "ms": 7, "mfc": "none", "lw": 2.5},
    "SGD+momentum": {"marker": "x", "ms": 5, "lw": 1.5, "ls": "--"},
    "SGD+WD": {"marker": "o", "ms": 3},
    "SGD+WRS": {"marker": "o", "ms": 3},
    "Adam": {"marker": "s", "ms": 2.5, "lw": 1, "ls": ":"},
}


def orthogonal_component(results: Results):
    """‖W_tP⊥‖/‖W_0P⊥‖ per optimizer and setup, with the theory lines 1 and (1 − ηλ)^t."""
    table = orth_table(results).dropna(subset=["ratio"]) if len(results.records) else pd.DataFrame()
    if table.empty:
        return missing_figure("orthogonal component", ["orth.ratio records"])
    fig, axes = _panels(table)
    for setup, ax in axes.items():
        sub = table[table["setup"] == setup]
        for tag in ORDER:
            rows = sub[sub["tag"] == tag]
            if len(rows):
                s = summarize_ci(rows, ["updates"], "ratio", log=True)
                ax.plot(s["updates"], s["mean"], color=COLORS[tag], label=tag, **_LINE[tag])
                ax.fill_between(
                    s["updates"], s["low"], s["high"], color=COLORS[tag], alpha=0.2, lw=0
                )
        t = np.linspace(0, sub["updates"].max(), 100)
        ax.plot(t, (1 - LR * WD) ** t, "k--", lw=1, label="theory: (1 − ηλ)^t")
        ax.axhline(1, color="gray", ls=":", lw=1, label="theory: SGD, 1")
        ax.set(
            yscale="log",
            xlabel="optimizer steps t",
            ylabel="‖W_t P⊥‖ / ‖W_0 P⊥‖ (log)",
            title=setup,
        )
        ax.grid(alpha=0.3)
    handles, labels = next(iter(axes.values())).get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(
        "First layer: weight component outside the span of its inputs (mean, 95% CI over seeds)"
    )
    fig.tight_layout()
    return fig


def drift(results: Results):
    """‖(W_t − W_0)P⊥‖/‖W_0P⊥‖ per optimizer: rounding level for SGD, large for Adam in a
    rotated subspace."""
    table = orth_table(results).dropna(subset=["drift"]) if len(results.records) else pd.DataFrame()
    table = table[table["drift"] > 0] if len(table) else table
    if table.empty:
        return missing_figure("drift", ["orth.drift records"])
    fig, axes = _panels(table)
    for setup, ax in axes.items():
        sub = table[table["setup"] == setup]
        for tag in ORDER:
            rows = sub[sub["tag"] == tag]
            if len(rows):
                s = summarize_ci(rows, ["updates"], "drift", log=True)
                ax.plot(s["updates"], s["mean"], color=COLORS[tag], label=tag, **_LINE[tag])
        ax.axhline(TOL, color="crimson", ls="--", lw=1, label=f"registered tolerance {TOL:g}")
        ax.set(
            yscale="log",
            xlabel="optimizer steps t",
            ylabel="‖(W_t − W_0) P⊥‖ / ‖W_0 P⊥‖ (log)",
            title=setup,
        )
        ax.grid(alpha=0.3)
    handles, labels = next(iter(axes.values())).get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(
        "How far each optimizer moves the orthogonal component (geometric mean over seeds)"
    )
    fig.tight_layout()
    return fig


def accuracy(results: Results):
    """Final test accuracy and relative orthogonal norm per optimizer and setup."""
    final = final_table(results)
    if final.empty:
        return missing_figure("accuracy", ["completed cells"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, column, label, title in (
        (ax1, "final_test_acc", "final test accuracy", "Final test accuracy"),
        (ax2, "relative", "‖W P⊥‖ / ‖W‖ at the end", "Relative orthogonal norm, first layer"),
    ):
        sns.pointplot(
            data=final,
            x="setup",
            y=column,
            hue="tag",
            hue_order=ORDER,
            palette=COLORS,
            errorbar=("ci", 95),
            dodge=0.5,
            linestyle="none",
            ax=ax,
            markersize=5,
        )
        ax.set(xlabel="", ylabel=label, title=title)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(alpha=0.3)
        ax.get_legend().remove()
    handles, labels = ax1.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle("Outcome per optimizer (mean and 95% bootstrap CI over seeds)")
    fig.tight_layout()
    return fig


STUDY = Study(
    name="orthogonal_noise",
    title="The weight component orthogonal to the input span under SGD, WD, WRS and Adam",
    claims=("SPAN-ORTH", "WRS"),
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
    },
    hooks=hooks,
    statistics=statistics,
    figures={
        "orthogonal_component": orthogonal_component,
        "drift": drift,
        "accuracy": accuracy,
    },
)
