"""Does normalization make the loss landscape smoother along the gradient?

Claims (``shared/CLAIMS.md``):
- BN-SMOOTH (Santurkar et al. 2018): along w(η) = w − η·g, η ∈ [½, 4] × the training LR, BN gives
  a narrower loss range, smaller gradient predictiveness ‖∇L(w) − ∇L(w(η))‖ and smaller effective
  β-smoothness max_η ‖∇L(w) − ∇L(w(η))‖ / ‖η·g‖ than the same net without BN.
  Statistic: mean over measured steps of log β(none) − log β(BN), per seed; > 0.
- WS-SMOOTH (Qiao et al. 2019): GN+WS has smaller effective β-smoothness and top Hessian
  eigenvalue than GN alone at the same point in training. Two statistics, each per seed:
  mean over steps of log β(GN) − log β(GN+WS) > 0 and log λ_max(GN) − log λ_max(GN+WS) > 0.

Protocol (the paper used VGG on CIFAR-10, SGD, LR 0.1, batch 128, no augmentation): a VGG-style
stack of 3×3 convolutions on the 8×8 digits, plain SGD at the same learning rate for every norm,
train-mode measurements on a fixed probe batch every few steps (the same batch and the same
dropout masks at every point of a measurement). CIs are Student t over seeds.
"""

import numpy as np

from normtheory.experiment import TrainCell
from normtheory.hooks import HessianSpectrum, LossAccuracy, Smoothness
from normtheory.report.figures import metric_panels
from normtheory.stats import mean_ci, verdict
from normtheory.study import Grid, Profile, Results, Study

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


def hooks(cell: TrainCell):
    every = max(cell.steps // 12, 1)
    return [
        LossAccuracy(every=10),
        Smoothness(every=every),
        HessianSpectrum(k=1, every=max(cell.steps // 4, 1), at_end=True),
    ]


def _per_seed_log_gap(records, metric: str, worse: str, better: str, key: str | None = None):
    """Per seed: mean over the shared measured steps of log(metric[worse]) − log(metric[better])."""
    rows = records[(records["metric"] == metric) & records["norm"].isin([worse, better])]
    if key is not None:
        rows = rows[rows["key"] == key]
    table = rows.pivot_table(index=["seed", "step"], columns="norm", values="value").dropna()
    if worse not in table or better not in table:
        return None
    gap = np.log(table[worse].clip(lower=1e-300)) - np.log(table[better].clip(lower=1e-300))
    return gap.groupby(level="seed").mean()


def verdicts(results: Results):
    rec, out = results.records, []
    beta = _per_seed_log_gap(rec, "smoothness.beta", "none", "batch")
    if beta is not None:
        rng = _per_seed_log_gap(rec, "smoothness.loss_range", "none", "batch")
        pred = _per_seed_log_gap(rec, "smoothness.grad_pred_max", "none", "batch")
        detail = (
            f"ratios none/BN (geometric mean over steps and seeds): β-smoothness ×{np.exp(beta.mean()):.3g}, "
            f"loss range ×{np.exp(rng.mean()):.3g}, max gradient predictiveness ×{np.exp(pred.mean()):.3g}"
        )
        out.append(
            verdict(
                "BN-SMOOTH",
                "log β(none) − log β(BN), mean over steps",
                mean_ci(beta),
                "greater",
                detail=detail,
            )
        )
    ws_beta = _per_seed_log_gap(rec, "smoothness.beta", "group", "group+ws")
    if ws_beta is not None:
        out.append(
            verdict(
                "WS-SMOOTH",
                "log β(GN) − log β(GN+WS), mean over steps",
                mean_ci(ws_beta),
                "greater",
                detail=f"β ratio GN/GN+WS ×{np.exp(ws_beta.mean()):.3g}",
            )
        )
    ws_eig = _per_seed_log_gap(rec, "hessian.eig", "group", "group+ws", key="1")
    if ws_eig is not None:
        out.append(
            verdict(
                "WS-SMOOTH",
                "log λ_max(GN) − log λ_max(GN+WS), mean over steps",
                mean_ci(ws_eig),
                "greater",
                detail=f"top-eigenvalue ratio GN/GN+WS ×{np.exp(ws_eig.mean()):.3g}",
            )
        )
    return out


def landscape(results: Results):
    panels = {
        "smoothness.loss_range": "loss range along −g",
        "smoothness.grad_pred_max": "max ‖∇L(w) − ∇L(w − ηg)‖",
        "smoothness.beta": "effective β-smoothness",
        "hessian.eig": "top Hessian eigenvalue λ_max",
    }
    n = results.records["seed"].nunique()
    return metric_panels(
        results.records,
        panels,
        title=f"Loss landscape along the gradient, η ∈ [0.5, 4]×LR (train mode; geometric mean, 95% t-CI over {n} seeds)",
    )


STUDY = Study(
    name="smoothness",
    title="Loss-landscape smoothness along the gradient, with and without BN and WS",
    claims=("BN-SMOOTH", "WS-SMOOTH"),
    profiles={
        "quick": Profile(
            Grid(BASE, {"norm": ("none", "batch", "group", "group+ws")}),
            seeds=3,
            description="300 steps, 3 seeds",
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
    verdicts=verdicts,
    figures={"landscape": landscape},
)
