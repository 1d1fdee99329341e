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
`find_scale_invariant` reports (the three conv weights). ``standard``: the same on Fashion-MNIST
(20 000 training examples), a depth-4 net, 1875 steps (3 epochs), 5 seeds.

``paper`` checks the identities at the scale of Liu et al. 2021's CIFAR-10 experiments (their
Sec. 4 analysis, which their Fig. 1 VGG16 runs rest on; no figure of theirs plots the identities
themselves): He et al.'s ResNet-20 on CIFAR-10 (random crop + flip), BN and GN (4 groups), plain
SGD η = 0.1 at batch 128, λ ∈ {0, 5e-4} (the usual CIFAR decay), 10 epochs, 5 seeds; every conv
weight of the ResNet (21, the two projection shortcuts included) is recorded every 5 steps.
"""

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from normtheory import plots
from normtheory.analysis import metric
from normtheory.claims import get_claim
from normtheory.evidence import Exact
from normtheory.experiment import PAPER_DATA, PAPER_EPOCH, STANDARD_DATA, TrainCell
from normtheory.hooks import LossAccuracy, ScaleInvariance, every
from normtheory.results import Results
from normtheory.study import Grid, Profile, Study

# plain SGD: no momentum, constant η = 0.1, batch 32 (the `TrainCell` default)
BASE = TrainCell(
    dataset="digits", arch="convnet", width=16, depth=3, groups=4, lr=0.1, momentum=0.0, steps=300
)
# Fashion-MNIST (20 000), depth 4, 3 epochs at batch 32.
STANDARD = replace(BASE, **STANDARD_DATA, depth=4, steps=1875)
# ResNet-20 on CIFAR-10 (crop + flip), batch 128, 10 epochs (as examples: `PAPER_EPOCH`).
PAPER = replace(BASE, **PAPER_DATA, arch="resnet", depth=20, batch_size=128,
                examples=10 * PAPER_EPOCH)  # fmt: skip
SI = ScaleInvariance
# The registered tolerances, drawn in the figure.
COS_TOL = get_claim("SI-ORTH").test.statistic("train_cosine").sesoi
RES_TOL = get_claim("SI-GROWTH").test.statistic("train_residual").sesoi
STYLES = {0.0: "-", 0.01: "--"}
PANEL = (5.2, 3.8)  # the identities' titles and labels are long


def hooks(cell: TrainCell):
    return [LossAccuracy(every=every(10)), ScaleInvariance(every=every(5))]


def _worst(frame: pd.DataFrame, name: str) -> float:
    """The largest |value| of the records of metric `name` (NaN when there are none)."""
    values = frame[frame["metric"] == name]["value"].abs()
    return float(values.max()) if len(values) else float("nan")


def statistics(results: Results):
    out, rec = [], results.records
    bn, gn = rec[rec["norm"] == "batch"], rec[rec["norm"] == "group"]
    n_bn = bn["seed"].nunique()
    if math.isfinite(_worst(bn, SI.COSINE_CHANNEL)):
        detail = (
            f"BN whole-tensor max |cos| {_worst(bn, SI.COSINE):.2g}; contrast GN (4 channels per "
            f"group): whole-tensor {_worst(gn, SI.COSINE):.2g}, "
            f"per row {_worst(gn, SI.COSINE_CHANNEL):.2g}"
        )
        worst = _worst(bn, SI.COSINE_CHANNEL)
        out.append(Exact("SI-ORTH", "train_cosine", worst, n=n_bn, detail=detail))
    if math.isfinite(_worst(bn, SI.RESIDUAL_CHANNEL)):
        norms = metric(bn, SI.NORM)
        norms = norms[norms["weight_decay"] == 0].sort_values("step")
        grew = (norms.groupby(["cell", "seed", "key"])["value"].diff().dropna() > 0).mean()
        eff = metric(bn, SI.EFFECTIVE_LR_CHANNEL).sort_values("step")
        ends = eff.groupby(["weight_decay", "cell", "seed", "key"])["value"].agg(["first", "last"])
        change = (ends["last"] / ends["first"]).groupby("weight_decay").median()
        detail = (
            f"λ = 0: ‖w‖ grew between consecutive records in {grew:.1%} of cases; effective LR "
            "end/start (median): "
            + ", ".join(f"λ = {wd:g}: ×{v:.2f}" for wd, v in change.items())
            + f"; contrast GN: whole-tensor {_worst(gn, SI.RESIDUAL):.2g}, per row "
            f"{_worst(gn, SI.RESIDUAL_CHANNEL):.2g}"
        )
        worst = _worst(bn, SI.RESIDUAL_CHANNEL)
        out.append(Exact("SI-GROWTH", "train_residual", worst, n=n_bn, detail=detail))
    return out


def _curves(ax, frame: pd.DataFrame, *, log: bool, agg="mean"):
    """One line per norm (its colour) and λ (solid 0, dashed 0.01): per step, the mean and 95 %
    CI over seeds of the seeds' values (rows of a seed combined by `agg`)."""
    palette = plots.norm_palette(frame["norm"].unique())
    for (norm, wd), sub in frame.groupby(["norm", "weight_decay"]):
        style = {"color": palette[norm], "ls": STYLES.get(wd, ":"), "marker": "o", "ms": 0}
        label = f"{plots.norm_label(norm)}, λ = {wd:g}"
        plots.seed_curve(ax, sub, "step", "value", log=log, agg=agg, label=label, **style)
    if log:
        ax.set_yscale("log")


def _shown_weight(records: pd.DataFrame) -> str:
    """The weight the growth figure follows: ``conv2.weight`` (the convnets), else the first
    recorded one in name order (a ResNet's ``stage1.block1.conv1.weight``)."""
    keys = sorted(metric(records, SI.NORM)["key"].unique()) if len(records) else []
    return "conv2.weight" if "conv2.weight" in keys or not keys else keys[0]


def growth(results: Results):
    """‖w‖ and effective LR η/‖w_o‖² over training, per norm and λ."""
    shown = _shown_weight(results.records)
    norms = metric(results.records, SI.NORM, shown)
    eff = metric(results.records, SI.EFFECTIVE_LR_CHANNEL, shown)
    if norms.empty or eff.empty:
        return plots.missing_figure("weight growth", [f"{SI.NORM} / {SI.EFFECTIVE_LR_CHANNEL}"])
    fig, axes = plots.panels(2, size=PANEL)
    _curves(axes[0], norms, log=False)
    _curves(axes[1], eff, log=True)
    layer = shown.removesuffix(".weight")
    axes[0].set_ylabel(f"‖w‖ of {layer}")
    axes[1].set_ylabel(f"η / ‖w_o‖² of {layer}\n(mean over rows, log)")
    return plots.finish(
        fig,
        axes,
        title="Scale-invariant weights under plain SGD (mean, 95% CI over seeds)",
        titles=["Weight norm (SGD grows it; WD shrinks it)", "Effective learning rate"],
        xlabel="step",
    )


def identities(results: Results):
    """|cos(w, ∇L)| and the SI-GROWTH residual, per row (solid) and whole tensor (GN dotted)."""
    frames = {m: metric(results.records, m) for m in (SI.COSINE_CHANNEL, SI.RESIDUAL_CHANNEL)}
    whole = metric(results.records, SI.RESIDUAL)
    if any(f.empty for f in [*frames.values(), whole]):
        return plots.missing_figure("scale-invariance identities", [f"{SI.PREFIX}* records"])
    fig, axes = plots.panels(2, size=PANEL)
    worst = lambda v: float(np.max(np.abs(v)))  # noqa: E731 - the largest over layers per step
    _curves(axes[0], frames[SI.COSINE_CHANNEL], log=True, agg=worst)
    axes[0].axhline(COS_TOL, color="crimson", ls=":", lw=1, label=f"SI-ORTH tolerance {COS_TOL:g}")
    clipped = lambda f: f.assign(value=f["value"].abs().clip(lower=1e-12))  # noqa: E731
    _curves(axes[1], clipped(frames[SI.RESIDUAL_CHANNEL]), log=True, agg=worst)
    for wd, sub in clipped(whole[whole["norm"] == "group"]).groupby("weight_decay"):
        s = sub.groupby("step")["value"].max()
        label = f"GN whole tensor, λ = {wd:g}"
        axes[1].plot(s.index, s.values, color="gray", ls=STYLES.get(wd, ":"), lw=1, label=label)
    axes[1].axhline(
        RES_TOL, color="crimson", ls=":", lw=1, label=f"SI-GROWTH tolerance {RES_TOL:g}"
    )
    axes[0].set_ylabel("|cos(w_o, ∇L_o)|, max over rows\nand layers (log)")
    axes[1].set_ylabel("|relative growth residual|, max\nover rows and layers (log)")
    return plots.finish(
        fig,
        axes,
        title="The identities hold row by row for BN; for GN only for the whole tensor",
        titles=[
            "Gradient orthogonal to the weight, per row (SI-ORTH)",
            "Norm-growth identity, per row (SI-GROWTH)",
        ],
        xlabel="step",
    )


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
        "standard": Profile(
            Grid(STANDARD, {"norm": ("batch", "group"), "weight_decay": (0.0, 0.01)}),
            seeds=5,
            description="Fashion-MNIST (20 000), depth 4, BN and GN × λ ∈ {0, 0.01}, 1875 steps, "
            "5 seeds",
            cost="≈10 min on 2 CPU cores (one cell: ≈25 s of CPU)",
        ),
        "paper": Profile(
            Grid(PAPER, {"norm": ("batch", "group"), "weight_decay": (0.0, 5e-4)}),
            seeds=5,
            description="CIFAR-10 (crop + flip), ResNet-20, BN and GN × λ ∈ {0, 5e-4}, plain SGD "
            "η = 0.1, batch 128, 10 epochs, 5 seeds",
            cost="≈15 min on one H100-class GPU (estimate, not measured: 78 k ResNet-20 steps at "
            "≈5 ms, and the identities of 21 weights every 5 steps)",
            smoke={"batch_size": 32, "max_train": 32, "examples": 64, "width": 4},
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
