"""Does BN's batch noise regularize? GN vs BN at a normal batch size: training vs test error.

Claim GN-REG (Wu & He 2018, "Group Normalization", Fig. 4; ``CLAIMS.md``, registered test in
``normtheory/claims.toml``): at 32 images per batch GN has a *lower training error* than BN but a
*slightly higher validation error* (ImageNet: 24.1 % vs 23.6 %): BN's statistics, computed on a
random batch, add noise that regularizes, and GN gives it up. Statistics, one value per seed,
paired by seed: ``val_err_gap`` = test error GN − BN (> 0) and ``train_err_gap`` = training error
BN − GN (> 0), rule all. Training error as the paper plots it: 1 − the accuracy on the training
batches as the loop sees them (train mode, augmented; `LossAccuracy` every step), averaged over
the last epoch. Checks: ``bn_trained`` (BN's mean test accuracy ≥ 0.85) and
``train_error_present`` (BN's mean last-epoch training error ≥ 0.005: a net that fits the
augmented training set perfectly cannot show a lower training error).

Protocol: the same net, learning rate, schedule, augmentation and epochs for both norms (the
paper trains BN and GN alike), GN with 4 groups (4 channels each at width 16).
``quick``: a depth-4 convnet (width 16) on the digits, random crops (padding 1 of 8), batch 32,
SGD with momentum 0.9, LR 0.1, weight decay 5·10⁻⁴, cosine to 0 over 20 epochs, 5 seeds. Explored
before registration on BN alone (30 epochs, validation split): last-epoch training error 1.3 %
for this convnet, 0.19 % for a ResNet-8, so the convnet keeps the precondition. ``standard``:
Fashion-MNIST (20 000 training examples), the same net and recipe, 10 epochs, 5 seeds.
``paper``: CIFAR-10 with random crops and flips, ResNet-20 (width 16; GN with 4 groups), batch 32, the GN
paper's rule LR 0.1 · B/256 = 0.0125, weight decay 10⁻⁴, 100 epochs with the LR ×0.1 at 50 % and
75 % (the paper's ImageNet schedule, 30/60/90 of 100, in halves), 5 seeds.
"""

from dataclasses import replace

import numpy as np
import pandas as pd

from normtheory.analysis import final_outcomes, metric, seed_gap
from normtheory.evidence import CheckValue, sample
from normtheory.experiment import PAPER_DATA, STANDARD_DATA, TrainCell, cell_data
from normtheory.hooks import LossAccuracy
from normtheory.plots import by_condition, missing_figure
from normtheory.results import Results
from normtheory.study import Grid, Profile, Study

# eval_every is one epoch's steps in every profile: the evaluation curve, and the steps whose
# training error counts as "the last epoch" (`outcomes`).
_DIGITS_EPOCH = len(cell_data(TrainCell(dataset="digits"))[0]) // 32
BASE = TrainCell(dataset="digits", arch="convnet", width=16, depth=4, groups=4, optimizer="sgd",
                 lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=32, epochs=20,
                 schedule="cosine", augment="crop", eval_every=_DIGITS_EPOCH)  # fmt: skip
NORMS = ("batch", "group")
STANDARD = replace(BASE, **STANDARD_DATA, epochs=10, eval_every=20000 // 32)
# CIFAR-10: 100 epochs of 50 000 // 32 = 1562 steps, given as steps (epochs would load the data
# to count them whenever the grid is built).
PAPER = replace(BASE, **PAPER_DATA, arch="resnet", depth=20, width=16, lr=0.0125,
                weight_decay=1e-4, epochs=0, steps=156200, schedule="step",
                eval_every=1562)  # fmt: skip


def hooks(cell: TrainCell):
    return [LossAccuracy(every=1)]


def outcomes(results: Results) -> pd.DataFrame:
    """Per norm × seed: test accuracy and error (`final_outcomes`) and ``train_err``, 1 − the
    mean training-batch accuracy over the last epoch (its last ``eval_every`` steps; NaN for a
    run that did not complete)."""
    table = final_outcomes(results.cells)
    acc = metric(results.records, LossAccuracy.TRAIN_ACC)
    if acc.empty or table.empty:
        return table.assign(train_err=np.nan)
    done = table.set_index(["cell", "seed"])
    acc = acc.drop(columns=["steps_done"], errors="ignore").join(
        done["steps_done"], on=["cell", "seed"]
    )
    last = acc[acc["step"] >= acc["steps_done"] - acc["eval_every"]]
    err = 1 - last.groupby(["cell", "seed"])["value"].mean()
    err = err.where(done["status"].reindex(err.index) == "completed")
    return table.join(err.rename("train_err"), on=["cell", "seed"])


def statistics(results: Results):
    table = outcomes(results)
    if table.empty or not set(NORMS) <= set(table["norm"]):
        return []
    means = table.groupby("norm")[["test_error", "train_err"]].mean()
    detail = "; ".join(
        f"{n}: test error {means.loc[n, 'test_error']:.4f}, training error (last epoch) "
        f"{means.loc[n, 'train_err']:.4f}"
        for n in NORMS
    )
    bn = table[table["norm"] == "batch"]
    return [
        sample("GN-REG", "val_err_gap", seed_gap(table, "test_error", "norm", "group", "batch"),
               detail=f"mean over seeds — {detail}"),
        sample("GN-REG", "train_err_gap", seed_gap(table, "train_err", "norm", "batch", "group"),
               detail=f"mean over seeds — {detail}"),
        CheckValue("GN-REG", "bn_trained", bn["test_acc"].mean(), f"BN, {len(bn)} runs"),
        CheckValue("GN-REG", "train_error_present", bn["train_err"].mean(),
                   f"BN's training error over the last epoch, mean over {len(bn)} runs"),
    ]  # fmt: skip


def errors(results: Results):
    """Left: training error over the last epoch; right: test error; BN and GN, mean and 95 %
    t-CI over seeds (the paper's claim: GN lower on the left, higher on the right)."""
    table = outcomes(results)
    if table.empty:
        return missing_figure("errors", ["completed BN and GN runs"])
    long = pd.concat([
        table.assign(value=table["train_err"], which="training error (last epoch, train mode)"),
        table.assign(value=table["test_error"], which="test error"),
    ])  # fmt: skip
    return by_condition(long, "value", "norm", hue="norm", panel="which", categorical=True,
                        title="BN vs GN at batch 32: training and test error",
                        ylabel="error (fraction)", xlabel="normalization")  # fmt: skip


def curves(results: Results):
    """Training error per epoch (train mode, augmented batches) and test error at every
    evaluation, BN and GN: the two panels of the paper's Fig. 4, mean and 95 % t-CI."""
    acc = metric(results.records, LossAccuracy.TRAIN_ACC)
    test = metric(results.records, LossAccuracy.TEST_ACC)
    if acc.empty:
        return missing_figure("curves", [LossAccuracy.TRAIN_ACC])
    epoch = np.floor(acc["step"] / acc["eval_every"]) + 1  # eval_every: one epoch's steps
    train = acc.assign(epoch=epoch, error=1 - acc["value"], which="training error")
    train = train.groupby(["norm", "seed", "epoch", "which"], as_index=False)["error"].mean()
    test = test.assign(epoch=test["step"] / test["eval_every"], error=1 - test["value"],
                       which="test error")  # fmt: skip
    frame = pd.concat([train, test[["norm", "seed", "epoch", "which", "error"]]])
    return by_condition(frame, "error", "epoch", hue="norm", panel="which", categorical=False,
                        log=True, title="Error over training, BN vs GN at batch 32",
                        ylabel="error (fraction, log)", xlabel="epoch")  # fmt: skip


STUDY = Study(
    name="gn_regularization",
    title="Group Norm vs Batch Norm at a normal batch: training vs test error",
    claims=("GN-REG",),
    reference=("quick", "standard"),
    profiles={
        "quick": Profile(
            Grid(BASE, {"norm": NORMS}),
            seeds=5,
            description="digits, convnet depth 4, BN and GN at batch 32, random "
            "crops, 20 epochs, 5 seeds",
        ),
        "standard": Profile(
            Grid(STANDARD, {"norm": NORMS}),
            seeds=5,
            description="Fashion-MNIST (20 000), convnet depth 4, BN and GN at "
            "batch 32, random crops, 10 epochs, 5 seeds",
            cost="≈20 min on 2 CPU cores (0.032 CPU-s per step timed, 62 500 steps)",
        ),
        "paper": Profile(
            Grid(PAPER, {"norm": NORMS}),
            seeds=5,
            description="CIFAR-10, ResNet-20, BN and GN at batch 32, LR 0.0125, "
            "100 epochs, step schedule, 5 seeds",
            cost="≈2 h on one GPU (10 runs of 156 200 steps; an estimate, not timed)",
            smoke={
                "batch_size": 16,
                "max_train": 32,
                "steps": 4,
                "eval_every": 2,
                "width": 4,
                "depth": 8,
            },
        ),
    },  # fmt: skip
    hooks=hooks,
    statistics=statistics,
    figures={"errors": errors, "curves": curves},
)
