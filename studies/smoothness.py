"""Does normalization make the loss landscape smoother along the gradient?

Claims (``CLAIMS.md``; registered tests in ``normtheory/claims.toml``):
- BN-SMOOTH (Santurkar et al. 2018): along w(η) = w − η·g, η ∈ [½, 4] × the training LR, BN gives
  a narrower loss range, smaller gradient predictiveness ‖∇L(w) − ∇L(w(η))‖ and smaller effective
  β-smoothness max_η ‖∇L(w) − ∇L(w(η))‖ / ‖η·g‖ than the same net without BN.
  Statistics, one value per seed, each a mean over the measured steps of a log gap no-BN − BN:
  ``log_beta_gap`` (primary), ``log_loss_range_gap`` and ``log_grad_pred_gap``; all > 0.
- WS-SMOOTH (Qiao et al. 2019): GN+WS has smaller effective β-smoothness and top Hessian
  eigenvalue than GN alone at the same point in training, measured scale-invariantly: the conv
  weights of both nets are scale-invariant (WS per row, GN per group of rows), so raw β and
  λ_max move when they are rescaled at an unchanged function. With D = RMS row norm of each
  invariant group (`normtheory.measure.scale_invariant.invariant_metric`; 1 on the head, γ, β),
  λ_max(D H D) and β in the coordinates D⁻¹w are the raw measures at the canonical point where
  every invariant filter has unit norm. Per seed, mean over steps of ``log_beta_gap_inv`` =
  log β_inv(GN) − log β_inv(GN+WS) > 0 and ``log_eig_gap_inv`` (λ_max(DHD)) > 0 (primary); the
  raw ``log_beta_gap`` and ``log_eig_gap`` are secondary (not scale-invariant).
Check ``both_trained`` (each claim): the smaller of the two compared nets' mean final test
accuracy over seeds (`normtheory.analysis.FINAL_METRIC_POLICY`: a run that diverged counts as
accuracy 0): a landscape of a net that did not train says nothing.

Protocol (the paper used VGG on CIFAR-10, SGD, LR 0.1, batch 128, no augmentation): a VGG-style
stack of 3×3 convolutions on the 8×8 digits, plain SGD at the same learning rate for every norm,
train-mode measurements on a fixed probe batch every few steps (the same batch and the same
dropout masks at every point of a measurement). With several learning rates (``full``), a seed's
value is the mean of its per-LR gaps. ``standard``: the same net and measurements on
Fashion-MNIST (20 000 training examples), 1560 steps (5 epochs), 5 seeds.

``paper`` reproduces Santurkar et al. 2018, Fig. 4 (loss landscape, gradient predictiveness and
effective β-smoothness of VGG with and without BN on CIFAR-10) in its setting: CIFAR-10 without
augmentation, SGD at LR 0.1, batch 128, 3906 steps (10 epochs), with an 8-layer VGG-style stack
of 64-channel 3×3 convolutions as the VGG stand-in (stride 2 every second layer, global pooling,
linear head); GN and GN+WS with the 32 groups of Wu & He and Qiao et al.; 5 seeds.
"""

from dataclasses import replace

import numpy as np
import pandas as pd

from normtheory import plots
from normtheory.analysis import final_outcomes, metric, seed_gap
from normtheory.evidence import CheckValue, sample
from normtheory.experiment import STANDARD_DATA, TrainCell
from normtheory.hooks import HessianSpectrum, LossAccuracy, Smoothness, every, rename
from normtheory.results import Results
from normtheory.study import Grid, Profile, Study

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
NORMS = ("none", "batch", "group", "group+ws")
# Fashion-MNIST, 5 epochs of 20 000 examples at batch 64 (1560 steps); measured as in quick.
STANDARD = replace(BASE, **STANDARD_DATA, steps=1560)
# Santurkar et al.'s setting: CIFAR-10 without augmentation, LR 0.1, batch 128, here 10 epochs of
# a VGG-style stack (8 convs of 64 channels); GN with 32 groups. `steps`, not examples: the hooks
# space their measurements over `cell.steps`.
PAPER = replace(BASE, dataset="cifar10", width=64, depth=8, groups=32, lr=0.1, batch_size=128,
                steps=3906)  # fmt: skip


# WS-SMOOTH's nets are also measured in the scale-invariant metric (`invariant_metric`)
INVARIANT_NORMS = ("group", "group+ws")
BETA_INV, EIG_INV = (
    rename(Smoothness.BETA, "smoothness_inv"),
    rename(HessianSpectrum.EIG, "hessian_inv"),
)


def hooks(cell: TrainCell):
    smooth, hess = every(max(cell.steps // 12, 1)), every(max(cell.steps // 4, 1))
    out = [
        LossAccuracy(every=10),
        Smoothness(every=smooth),
        HessianSpectrum(k=1, every=hess, at_end=True),
    ]
    if cell.norm in INVARIANT_NORMS:
        out += [
            Smoothness(every=smooth, invariant=True, name="smoothness_inv"),
            HessianSpectrum(k=1, every=hess, at_end=True, invariant=True, name="hessian_inv"),
        ]
    return out


# recorded metric -> (panel title, y label); the top eigenvalue is rank 1 (key "1")
PANELS = {
    Smoothness.LOSS_RANGE: ("Loss range along −g", "max L − min L"),
    Smoothness.GRAD_PRED_MAX: ("Gradient predictiveness", "max ‖∇L(w) − ∇L(w − ηg)‖"),
    Smoothness.BETA: ("Effective β-smoothness", "β (max over η)"),
    HessianSpectrum.EIG: ("Top Hessian eigenvalue", "λ_max"),
}
INVARIANT_PANELS = {
    Smoothness.BETA: ("Effective β, raw weights (not scale-invariant)", "β"),
    BETA_INV: ("Effective β, scale-invariant metric", "β in u = D⁻¹w"),
    HessianSpectrum.EIG: ("λ_max, raw weights (not scale-invariant)", "λ_max(H)"),
    EIG_INV: ("λ_max, scale-invariant metric", "λ_max(D H D)"),
}
KEYS = ["", "1"]
# claim -> (worse, better, {registered statistic: recorded metric})
TESTS = {
    "BN-SMOOTH": (
        "none",
        "batch",
        {
            "log_beta_gap": Smoothness.BETA,
            "log_loss_range_gap": Smoothness.LOSS_RANGE,
            "log_grad_pred_gap": Smoothness.GRAD_PRED_MAX,
        },
    ),
    "WS-SMOOTH": (
        "group",
        "group+ws",
        {
            "log_beta_gap_inv": BETA_INV,
            "log_eig_gap_inv": EIG_INV,
            "log_beta_gap": Smoothness.BETA,
            "log_eig_gap": HessianSpectrum.EIG,
        },
    ),
}


def log_gap(records: pd.DataFrame, name: str, worse: str, better: str) -> pd.Series:
    """Per seed: mean over (learning rate, measured step) of log name[worse] − log name[better]."""
    rows = metric(records, name, KEYS)
    if not {worse, better} <= set(rows["norm"]):
        return pd.Series(dtype=float)
    pair = rows[rows["norm"].isin([worse, better])]
    return seed_gap(pair, "value", "norm", worse, better, within=["lr", "step"], log=True)


def statistics(results: Results):
    out, acc = [], final_outcomes(results.cells).groupby("norm")["test_acc"].mean()
    for claim, (worse, better, stats) in TESTS.items():
        pair = f"{plots.norm_label(worse)}/{plots.norm_label(better)}"
        for name, recorded in stats.items():
            gap = log_gap(results.records, recorded, worse, better)
            if gap.empty:
                continue
            panels = INVARIANT_PANELS if recorded in (BETA_INV, EIG_INV) else PANELS
            title = panels[recorded][0]
            what = title[0].lower() + title[1:]
            ratio = np.exp(gap.mean())
            detail = f"{what}: ratio {pair} ×{ratio:.3g} (geometric mean over steps and seeds)"
            out.append(sample(claim, name, gap, detail=detail))
        if worse in acc and better in acc:
            detail = "mean final test accuracy " + ", ".join(
                f"{plots.norm_label(n)} {acc[n]:.3f}" for n in (worse, better)
            )
            out.append(CheckValue(claim, "both_trained", min(acc[worse], acc[better]), detail))
    return out


def landscape(results: Results):
    """One panel per measure: geometric mean over seeds (95 % t-CI, log space) vs step."""
    return plots.over_steps(
        results.records,
        PANELS,
        key=KEYS,
        title="Loss landscape along the gradient, η ∈ [0.5, 4]×LR, train mode",
    )


def invariance(results: Results):
    """GN and GN+WS: raw β and λ_max next to the same measures in the scale-invariant metric."""
    rows = results.records[results.records["norm"].isin(INVARIANT_NORMS)]
    return plots.over_steps(
        rows,
        INVARIANT_PANELS,
        key=KEYS,
        ncols=2,
        title="GN vs GN+WS: raw weight space vs scale-invariant metric D = RMS row norm per group",
    )


STUDY = Study(
    name="smoothness",
    title="Loss-landscape smoothness along the gradient, with and without BN and WS",
    claims=("BN-SMOOTH", "WS-SMOOTH"),
    reference=("quick", "standard"),
    profiles={
        "quick": Profile(Grid(BASE, {"norm": NORMS}), seeds=5, description="300 steps, 5 seeds"),
        "full": Profile(
            Grid(BASE, {"norm": NORMS, "lr": (0.05, 0.1)}),
            seeds=5,
            description="2 learning rates, 5 seeds",
        ),
        "standard": Profile(
            Grid(STANDARD, {"norm": NORMS}),
            seeds=5,
            description="Fashion-MNIST (20 000), 4 norms, 1560 steps (5 epochs), 5 seeds",
            cost="≈20 min on 2 CPU cores",
        ),
        "paper": Profile(
            Grid(PAPER, {"norm": NORMS}),
            seeds=5,
            description="CIFAR-10 (no augmentation), VGG-style 8-layer convnet of width 64, "
            "4 norms, LR 0.1, batch 128, 3906 steps (10 epochs), 5 seeds",
            cost="≈15 min on one H100-class GPU (estimate, not measured: 78 k steps at ≈3 ms, "
            "plus 13 landscape and 5 Hessian measurements per net)",
            smoke={"batch_size": 16, "max_train": 16, "steps": 2, "width": 8},
        ),
    },
    hooks=hooks,
    statistics=statistics,
    figures={"landscape": landscape, "invariance": invariance},
)
