"""Scale-invariant weights under SGD: orthogonal gradients, norm growth, effective learning rate.

Claims (``CLAIMS.md``; Liu et al. 2021, van Laarhoven 2017):
- SI-ORTH (exact): a weight feeding train-mode BN (ε = 0) has ⟨w, ∇L⟩ = 0, row by row.
  Statistic ``train_cosine``: the largest |cos(w_o, ∇L_o)| over rows, weights, steps, seeds and
  λ (BN).
- SI-GROWTH (exact): plain SGD with coupled decay λ gives ‖w_{t+1}‖² = (1 − ηλ)²‖w_t‖² + η²‖g_t‖²,
  so without decay the norm only grows and the effective LR η/‖w‖² only falls. Statistic
  ``train_residual``: the largest |relative residual| of that identity over rows, weights, steps,
  seeds and λ (BN).

In training the norms carry ε = 1e-5, so the invariance is exact only up to O(ε/σ²) (σ²: the
variance the norm sees) and float32 rounding: the registered tolerances (`normtheory.claims`) are
1e-3 for ``train_cosine`` and 1e-4 for ``train_residual``. The ε = 0 float64
versions are checked to 1e-10 by ``normtheory verify`` (`normtheory.measure.identities`).
Contrast: Group Norm with 4 channels per group makes a conv weight invariant to one common scale
of all its rows, not to each row's own scale, so the identities hold for the whole tensor but not
per row.

Protocol: a 3-layer convnet on the digits (width 16), plain SGD (η = 0.1, no momentum, constant),
λ ∈ {0, 0.01}, BN and GN; `ScaleInvariance` records every 5 steps, for every weight that
`find_scale_invariant` reports (the three conv weights).
"""

import math
from dataclasses import replace

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from normtheory.claims import get_claim
from normtheory.experiment import TrainCell
from normtheory.hooks import LossAccuracy, ScaleInvariance
from normtheory.report.figures import missing_figure, norm_palette, summarize_ci
from normtheory.study import Grid, Profile, Results, Study
from normtheory.verdicts import Exact

BASE = TrainCell(
    dataset="digits",
    arch="convnet",
    width=16,
    depth=3,
    groups=4,
    optimizer="sgd",
    lr=0.1,
    momentum=0.0,
    batch_size=32,
    steps=300,
)
# The registered tolerances, drawn in the figure.
COS_TOL = get_claim("SI-ORTH").test.statistic("train_cosine").sesoi
RES_TOL = get_claim("SI-GROWTH").test.statistic("train_residual").sesoi
STYLES = {0.0: "-", 0.01: "--"}


def hooks(cell: TrainCell):
    return [LossAccuracy(every=10), ScaleInvariance(every=5)]


def _metric(results: Results, metric: str) -> pd.DataFrame:
    rec = results.records
    return rec[rec["metric"] == f"scale_inv.{metric}"]


def statistics(results: Results):
    out = []
    bn = results.records[results.records["norm"] == "batch"]
    gn = results.records[results.records["norm"] == "group"]

    def worst(frame, metric):
        values = frame[frame["metric"] == f"scale_inv.{metric}"]["value"].abs()
        return float(values.max()) if len(values) else float("nan")

    n_bn = bn["seed"].nunique()
    if math.isfinite(worst(bn, "cosine_channel")):
        detail = (
            f"BN whole-tensor max |cos| {worst(bn, 'cosine'):.2g}; contrast GN (4 channels per "
            f"group): whole-tensor {worst(gn, 'cosine'):.2g}, per row {worst(gn, 'cosine_channel'):.2g}"
        )
        out.append(
            Exact("SI-ORTH", "train_cosine", worst(bn, "cosine_channel"), n=n_bn, detail=detail)
        )
    if math.isfinite(worst(bn, "residual_channel")):
        norms = _metric(results, "norm")
        norms = norms[(norms["norm"] == "batch") & (norms["weight_decay"] == 0)]
        grew = (
            norms.sort_values("step").groupby(["cell", "seed", "key"])["value"].diff().dropna() > 0
        ).mean()
        eff = _metric(results, "effective_lr_channel")
        eff = eff[eff["norm"] == "batch"].sort_values("step")
        ends = eff.groupby(["weight_decay", "cell", "seed", "key"])["value"].agg(["first", "last"])
        change = (ends["last"] / ends["first"]).groupby("weight_decay").median()
        detail = (
            f"λ = 0: ‖w‖ grew between consecutive records in {grew:.1%} of cases; effective LR "
            f"end/start (median): "
            + ", ".join(f"λ = {wd:g}: ×{v:.2f}" for wd, v in change.items())
            + f"; contrast GN: whole-tensor {worst(gn, 'residual'):.2g}, per row "
            f"{worst(gn, 'residual_channel'):.2g}"
        )
        out.append(
            Exact(
                "SI-GROWTH", "train_residual", worst(bn, "residual_channel"), n=n_bn, detail=detail
            )
        )
    return out


def _label(norm: str, wd: float) -> str:
    return f"{ {'batch': 'BN', 'group': 'GN'}.get(norm, norm) }, λ = {wd:g}"


def _curves(ax, frame: pd.DataFrame, *, log: bool, per_seed=np.mean):
    palette = norm_palette(sorted(frame["norm"].unique()))
    for (norm, wd), sub in frame.groupby(["norm", "weight_decay"]):
        per_seed_values = sub.groupby(["step", "seed"], as_index=False)["value"].agg(per_seed)
        s = summarize_ci(per_seed_values, ["step"], "value", log=log)
        ax.plot(
            s["step"],
            s["mean"],
            color=palette[norm],
            ls=STYLES.get(wd, ":"),
            label=_label(norm, wd),
        )
        ax.fill_between(s["step"], s["low"], s["high"], color=palette[norm], alpha=0.15, lw=0)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


def growth(results: Results):
    """‖w‖ and effective LR η/‖w_o‖² over training, per norm and λ."""
    norms, eff = _metric(results, "norm"), _metric(results, "effective_lr_channel")
    if norms.empty or eff.empty:
        return missing_figure("weight growth", ["scale_inv.norm / effective_lr_channel records"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    _curves(ax1, norms[norms["key"] == "conv2.weight"], log=False)
    ax1.set(
        xlabel="step",
        ylabel="‖w‖ of conv2",
        title="Weight norm (SGD grows it; WD shrinks it)",
    )
    _curves(ax2, eff[eff["key"] == "conv2.weight"], log=True)
    ax2.set(
        xlabel="step",
        ylabel="η / ‖w_o‖² of conv2, mean over rows (log)",
        title="Effective learning rate",
    )
    handles, labels = ax1.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle("Scale-invariant weights under plain SGD (mean, 95% CI over seeds)")
    fig.tight_layout()
    return fig


def identities(results: Results):
    """|cos(w, ∇L)| and the SI-GROWTH residual, per row (solid) and whole tensor (GN dotted)."""
    frames = {m: _metric(results, m) for m in ("cosine_channel", "residual_channel", "residual")}
    if any(f.empty for f in frames.values()):
        return missing_figure("scale-invariance identities", ["scale_inv.* records"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    worst = lambda v: float(np.max(np.abs(v)))  # noqa: E731 - the largest over layers per step
    _curves(ax1, frames["cosine_channel"], log=True, per_seed=worst)
    ax1.axhline(COS_TOL, color="crimson", ls=":", lw=1, label=f"tolerance {COS_TOL:g}")
    ax1.set(
        xlabel="step",
        ylabel="max over rows and layers of |cos(w_o, ∇L_o)| (log)",
        title="Gradient orthogonal to the weight, per row (SI-ORTH)",
    )
    res = frames["residual_channel"].assign(value=lambda f: f["value"].abs().clip(lower=1e-12))
    _curves(ax2, res, log=True, per_seed=worst)
    whole = frames["residual"]
    whole = whole[whole["norm"] == "group"].assign(
        value=lambda f: f["value"].abs().clip(lower=1e-12)
    )
    for wd, sub in whole.groupby("weight_decay"):
        s = sub.groupby("step")["value"].max()
        ax2.plot(
            s.index,
            s.values,
            color="gray",
            ls=STYLES.get(wd, ":"),
            lw=1,
            label=f"GN whole tensor, λ = {wd:g}",
        )
    ax2.axhline(RES_TOL, color="crimson", ls=":", lw=1, label=f"tolerance {RES_TOL:g}")
    ax2.set(
        xlabel="step",
        ylabel="max |relative growth residual| per row (log)",
        title="Norm-growth identity, per row (SI-GROWTH)",
    )
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
    fig.suptitle("The identities hold row by row for BN; for GN only for the whole tensor")
    fig.tight_layout()
    return fig


STUDY = Study(
    name="scale_invariance",
    title="Scale-invariant weights: orthogonal gradients and norm growth under SGD",
    claims=("SI-ORTH", "SI-GROWTH"),
    profiles={
        "quick": Profile(
            Grid(BASE, {"norm": ("batch", "group"), "weight_decay": (0.0, 0.01)}),
            seeds=5,
            description="BN and GN × λ ∈ {0, 0.01}, 300 steps, 5 seeds",
        ),
        "full": Profile(
            Grid(
                replace(BASE, steps=2000),
                {"norm": ("batch", "group", "layer"), "weight_decay": (0.0, 0.01)},
            ),
            seeds=5,
            description="BN, GN, LN × λ ∈ {0, 0.01}, 2000 steps, 5 seeds",
        ),
    },
    hooks=hooks,
    statistics=statistics,
    figures={"growth": growth, "identities": identities},
)
