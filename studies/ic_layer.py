"""Where should BN go relative to ReLU, and does the IC layer (ReLU → BN → Dropout) help?

Claims (``CLAIMS.md``; Chen et al. 2019, "Rethinking the usage of batch normalization and
dropout in the training of deep neural networks"):
- IC-ORDER (empirical): Weight → ReLU → BN → Dropout → Weight trains faster and more stably than
  Weight → BN → ReLU at equal steps, compared at the same dropout. Every net's loss on a fixed
  training subset (the first 1024 examples) is recorded in eval mode (dropout off) every 5
  steps: the training-batch loss carries the dropout noise and would handicap the dropout nets.
  Statistics, paired by seed (averaged over datasets within a seed): the area under that loss
  (its mean over the run) of W→BN→ReLU→Dropout − IC (> 0: IC faster; primary) and log(J_matched
  / J_IC) with J = sd of the changes of log loss between records over the last half
  (`normtheory.measure.curves.loss_jitter`; > 0: IC more stable; primary; rule all); the same
  two against W→BN→ReLU without dropout (the paper's baseline), the area of W→ReLU→BN − IC (the
  dropout at the IC placement) and the final test accuracy IC − W→BN→ReLU (secondary).
  Checks: both baselines train (mean final test accuracy).
- IC-SIGN (empirical): a layer fed by ReLU output (W→BN→ReLU→W) has non-negative inputs, so
  the per-sample gradient rows δ_o x of a linear layer are one-signed; with BN after the ReLU
  about half of a row's entries share its sign. Not an identity for convs (rows sum over
  positions) or in train-mode BN (ℓ_i depends on the batch). Statistics, per seed, on the
  same-sign fraction of the rows of ∇_W ℓ_i (`normtheory.measure.gradient_sign`; mean over the
  layers after the first, last measurement): W→BN→ReLU − W→ReLU→BN (> 0, primary), W→BN→ReLU
  (≈ 1), IC (≈ 0.5). Check: the baseline trains.

Protocol: a 3-layer convnet (width 16) on the digits, SGD with momentum 0.9, η = 0.05, batch 32,
300 steps; placements ``norm_act`` (W→BN→ReLU, and W→BN→ReLU→Dropout with keep 0.9),
``act_norm`` (W→ReLU→BN) and ``ic`` (W→ReLU→BN→Dropout, keep 0.9). `LossAccuracy` records the
eval-mode loss on the first 1024 training examples every 5 steps. On fixed training examples in
train mode `NeuronInformation` (every 50 steps, 512 examples) records the mean |corr| and binned
MI between the channels feeding each weight layer (pooled), `GradientSign` (every 100 steps, 128
examples) the same-sign fraction of each weight layer's gradient rows. Final test accuracy follows
`normtheory.analysis.FINAL_METRIC_POLICY` (a diverged run counts as accuracy 0).
``standard``: Fashion-MNIST (20 000 training examples), a depth-4 net, 6250 steps (10 epochs),
the test set every 625 steps, 5 seeds; the hooks keep quick's number of records (the fit loss
every steps/60, the information every steps/6, the gradient signs every steps/3).

``paper`` reproduces Chen et al. 2019's CIFAR-10 training curves and accuracy of ResNet-110 with
and without IC layers (their ResNet figure and CIFAR table) in their setting: ResNet-110 on
CIFAR-10 (random crop + flip), the four placements in every residual block (dropout keep 0.9),
SGD with momentum 0.9 at LR 0.1, weight decay 1e-4, batch 128, He et al.'s step schedule (×0.1 at
50 % and 75 %), 3906 steps (10 epochs), the test set evaluated every epoch; the hooks keep quick's
number of records as in standard; 5 seeds. The first weight layer left out of IC-SIGN is the
ResNet's stem (``stem.conv``), the layer fed by the data.
"""

from dataclasses import replace

import pandas as pd
import seaborn as sns
from torch.utils.data import TensorDataset

from normtheory.analysis import final_outcomes, metric, paired, seed_gap, seed_table
from normtheory.evidence import CheckValue, sample
from normtheory.experiment import PAPER_DATA, STANDARD_DATA, TrainCell, probe_batch
from normtheory.hooks import GradientSign, LossAccuracy, NeuronInformation, every
from normtheory.measure.curves import loss_jitter, steps_to_target
from normtheory.models import first_layer
from normtheory.plots import by_condition, over_steps
from normtheory.results import Results
from normtheory.study import Grid, Profile, Study

BASE = TrainCell(dataset="digits", arch="convnet", norm="batch", width=16, depth=3,
                 optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, steps=300,
                 eval_every=20)  # fmt: skip
# Fashion-MNIST, a depth-4 net, 6250 steps (10 epochs at batch 32, as the other standard
# profiles): at 3125 steps the W→BN→ReLU baseline ended at 84–85 % test accuracy (2 seeds), at
# the 85 % check; the test set every 625 steps.
STANDARD = replace(BASE, **STANDARD_DATA, depth=4, steps=6250, eval_every=625)
# ResNet-110 on CIFAR-10 (crop + flip), Chen et al.'s / He et al.'s recipe, 3906 steps (10 epochs at
# batch 128; `steps`, so the hooks keep quick's record counts), the test set every epoch.
PAPER = replace(BASE, **PAPER_DATA, arch="resnet", depth=110, lr=0.1, weight_decay=1e-4,
                batch_size=128, schedule="step", steps=3906, eval_every=390)  # fmt: skip
KEEP = 0.9  # the keep probability q of both dropout nets
CASES = (
    {"tag": "W→BN→ReLU", "placement": "norm_act", "dropout_keep": 1.0},
    {"tag": "W→BN→ReLU→Drop", "placement": "norm_act", "dropout_keep": KEEP},
    {"tag": "W→ReLU→BN", "placement": "act_norm", "dropout_keep": 1.0},
    {"tag": "IC: W→ReLU→BN→Drop", "placement": "ic", "dropout_keep": KEEP},
)
ORDER = [c["tag"] for c in CASES]
BASELINE, MATCHED, ACT_NORM, IC = ORDER
COLORS = dict(zip(ORDER, sns.color_palette("Dark2", 4)))
FIT_EXAMPLES, TARGET_LOSS, JITTER_START = 1024, 0.3, 0.5
FIT_LOSS = LossAccuracy.DATA_LOSS  # eval mode, dropout off, on the fixed training subset
RUN = ["dataset", "tag", "seed"]


def hooks(cell: TrainCell):
    """The same number of records in every profile: the fit loss 60 times per run (every 5 of
    quick's 300 steps), the information measures 6 times, the gradient signs 3 times."""
    fit = max(cell.steps // 60, 1)
    return [
        LossAccuracy(data=TensorDataset(*probe_batch(cell, FIT_EXAMPLES)), every=every(fit)),
        NeuronInformation(probe=probe_batch(cell, 512), every=every(fit * 10), max_units=32),
        GradientSign(probe=probe_batch(cell, 128), every=every(fit * 20)),
    ]


def _jitter(run: pd.DataFrame) -> float:
    run = run.sort_values("step")
    return loss_jitter(run["step"], run["value"], start=JITTER_START)


def _steps_to_target(run: pd.DataFrame) -> float:
    return steps_to_target(run["step"], run["value"], TARGET_LOSS)


def per_run(results: Results) -> pd.DataFrame:
    """One row per (dataset, tag, seed): fit area (mean eval-mode training-subset loss over the
    run), its jitter over the last half, its steps to the target loss, the test-loss area, and
    the final test accuracy (`final_outcomes`)."""
    fit = metric(results.records, FIT_LOSS).groupby(RUN)
    if not fit.ngroups:
        return pd.DataFrame()
    rows = pd.DataFrame(
        {
            "fit_auc": fit["value"].mean(),
            "jitter": fit.apply(_jitter, include_groups=False),
            "steps_to_target": fit.apply(_steps_to_target, include_groups=False),
            "test_auc": metric(results.records, LossAccuracy.TEST_LOSS)
            .groupby(RUN)["value"]
            .mean(),
        }
    )
    rows["final_test_acc"] = final_outcomes(results.cells).set_index(RUN)["test_acc"]
    return rows.reset_index()


def _gain(runs: pd.DataFrame, column: str, better: str, worse: str, log: bool = False):
    """Per seed: `column` of `better` − `worse` (log ratio with `log`), paired within a dataset,
    mean over datasets."""
    return seed_gap(runs, column, "tag", better, worse, within="dataset", log=log)


def _order_detail(runs: pd.DataFrame) -> str:
    by_tag = runs.groupby("tag")
    mean, spread = by_tag.mean(numeric_only=True), by_tag["final_test_acc"].std()
    jitter, reach = by_tag["jitter"].median(), by_tag["steps_to_target"].median()
    parts = [
        f"{t}: fit area {mean.loc[t, 'fit_auc']:.3f}, jitter (median) {jitter[t]:.3f}, steps to "
        f"{TARGET_LOSS} (median) {reach[t]:.0f}, test-loss area {mean.loc[t, 'test_auc']:.3f}, "
        f"final test acc {mean.loc[t, 'final_test_acc']:.3f} ± {spread[t]:.3f} (sd over seeds)"
        for t in ORDER
        if t in by_tag.groups
    ]
    return (
        "; ".join(parts) + f". Fit: eval-mode loss on the first {FIT_EXAMPLES} training examples."
    )


def _trained(runs: pd.DataFrame, tag: str) -> tuple[float, str]:
    acc = runs[runs["tag"] == tag]["final_test_acc"]
    return float(acc.mean()), f"{tag}: mean final test accuracy over {acc.notna().sum()} runs"


def statistics(results: Results):
    """IC-ORDER: ``fit_auc_gain``, ``jitter_ratio`` (primary), ``fit_auc_gain_plain``,
    ``jitter_ratio_plain``, ``dropout_fit_gain``, ``test_acc_gain``, checks ``baseline_trained``,
    ``matched_trained``; IC-SIGN: ``same_sign_gap``, ``same_sign_relu_fed``, ``same_sign_ic``,
    check ``baseline_trained`` (module docstring)."""
    out, runs = [], per_run(results)
    if not len(runs):
        return out
    base, trained = _trained(runs, BASELINE)
    if set(ORDER) <= set(runs["tag"]):
        detail = _order_detail(runs)
        rows = {
            "fit_auc_gain": _gain(runs, "fit_auc", MATCHED, IC),
            "jitter_ratio": _gain(runs, "jitter", MATCHED, IC, log=True),
            "fit_auc_gain_plain": _gain(runs, "fit_auc", BASELINE, IC),
            "jitter_ratio_plain": _gain(runs, "jitter", BASELINE, IC, log=True),
            "dropout_fit_gain": _gain(runs, "fit_auc", ACT_NORM, IC),
            "test_acc_gain": _gain(runs, "final_test_acc", IC, BASELINE),
        }
        out += [sample("IC-ORDER", name, v, detail=detail) for name, v in rows.items()]
        out += [
            CheckValue("IC-ORDER", "baseline_trained", base, detail=trained),
            CheckValue("IC-ORDER", "matched_trained", *_trained(runs, MATCHED)),
        ]
    sign = metric(results.records, GradientSign.SAME_SIGN, last=True)
    sign = sign[~_data_fed(sign)]  # the first layer is fed by the data, not by a ReLU
    if len(sign) and {BASELINE, ACT_NORM, IC} <= set(sign["tag"]):
        per_seed = sign.groupby(RUN, as_index=False)["value"].mean()
        table = seed_table(per_seed, "value", "tag", within="dataset")
        means, seed_mean = table.mean(), table.groupby(level="seed").mean()
        detail = "mean same-sign fraction: " + "; ".join(
            f"{t}: {means[t]:.3f}" for t in ORDER if t in means
        )
        out += [
            sample("IC-SIGN", "same_sign_gap", paired(table, BASELINE, ACT_NORM), detail=detail),
            sample("IC-SIGN", "same_sign_relu_fed", seed_mean[BASELINE], detail=detail),
            sample("IC-SIGN", "same_sign_ic", seed_mean[IC], detail=detail),
            CheckValue("IC-SIGN", "baseline_trained", base, detail=trained),
        ]
    return out


def _data_fed(records: pd.DataFrame) -> pd.Series:
    """Whether each record is about the net's first weight layer (``conv1`` of a convnet,
    ``stem.conv`` of a ResNet: `first_layer`), the one the data feeds."""
    if "arch" not in records:
        return records["key"] == "conv1"
    return records["key"] == records["arch"].map(first_layer)


def training(results: Results):
    """The eval-mode training-subset loss (shaded: the jitter window), the training-batch loss
    (dropout on) and the test loss over training per case (mean over seeds, log scale)."""
    fig = over_steps(
        results.records,
        {
            FIT_LOSS: (
                f"Training-subset loss, eval mode (dotted: {TARGET_LOSS})",
                "loss, dropout off",
            ),
            LossAccuracy.TRAIN_LOSS: ("Training-batch loss", "loss, dropout on"),
            LossAccuracy.TEST_LOSS: ("Test loss", "test loss (eval mode)"),
        },
        hue="tag",
        palette=COLORS,
        legend_title="placement",
        title="Training with BN before or after ReLU, with or without dropout, and the IC layer",
    )
    fig.axes[0].axhline(TARGET_LOSS, color="gray", ls=":", lw=1)  # the steps-to-target level
    last = results.records["step"].max()
    if last == last:
        fig.axes[0].axvspan(JITTER_START * last, last, color="0.9", zorder=0)
    return fig


def _per_case(results: Results, column: str, ylabel: str, title: str, log: bool = False):
    fig = by_condition(per_run(results), column, "tag", hue="tag", order=ORDER, hues=ORDER,
                       seeds=True, palette=COLORS, legend=None, xlabel="", ylabel=ylabel,
                       title=title, log=log)  # fmt: skip
    for ax in fig.axes:
        ax.tick_params(axis="x", labelsize=7, rotation=15)
    return fig


def accuracy(results: Results):
    """Final test accuracy per case, with each seed's run as a dot."""
    return _per_case(results, "final_test_acc", "final test accuracy",
                     "Final test accuracy per placement (dots: seeds)")  # fmt: skip


def stability(results: Results):
    """The jitter J per case (`loss_jitter` of the eval-mode training-subset loss over the last
    half), with each seed's run as a dot: the stability statistic."""
    return _per_case(results, "jitter", "J = sd of Δ log loss between records (log)",
                     "Jitter of the eval-mode training-subset loss, last half (dots: seeds)",
                     log=True)  # fmt: skip


def dependence(results: Results):
    """Mean |corr| and MI between the channels feeding each weight layer, and the same-sign
    fraction of the per-sample gradient rows, over training (layers after the first, averaged)."""
    fig = over_steps(
        results.records[~_data_fed(results.records)],
        {
            NeuronInformation.CORR_ABS: ("Correlation between channels", "mean |correlation|"),
            NeuronInformation.MI: ("Mutual information", "mean MI (nats, binned)"),
            GradientSign.SAME_SIGN: ("Gradient-row signs (dotted: 0.5)", "same-sign fraction"),
        },
        hue="tag",
        logy=False,
        palette=COLORS,
        legend_title="placement",
        title="Channels entering layers 2…L+head: dependence, gradient-row signs (train mode)",
    )
    fig.axes[2].axhline(0.5, color="gray", ls=":", lw=1)
    return fig


STUDY = Study(
    name="ic_layer",
    title="BN before or after ReLU, and the IC layer: convergence, stability, gradient signs",
    claims=("IC-ORDER", "IC-SIGN"),
    reference=("quick", "standard"),
    profiles={
        "quick": Profile(Grid(BASE, {}, CASES), 5, "4 cases, 300 steps, 5 seeds"),
        "full": Profile(
            Grid(BASE, {"dataset": ("digits", "mnist1d")}, CASES),
            8,
            "4 cases × digits, mnist1d, 300 steps, 8 seeds",
        ),
        "standard": Profile(
            Grid(STANDARD, {}, CASES),
            5,
            "Fashion-MNIST (20 000), 4 cases, depth 4, 6250 steps (10 epochs), 5 seeds",
            cost="≈25 min on 2 CPU cores",
        ),
        "paper": Profile(
            Grid(PAPER, {}, CASES),
            5,
            "CIFAR-10 (crop + flip), ResNet-110, 4 cases, LR 0.1 with step decay, batch 128, "
            "10 epochs, 5 seeds",
            cost="≈45 min on one H100-class GPU (estimate, not measured: 78 k ResNet-110 steps at "
            "≈25 ms, plus 60 fit losses, 6 dependence and 3 gradient-sign measurements per run)",
            smoke={"batch_size": 16, "max_train": 16, "steps": 2, "width": 4, "depth": 8},
        ),
    },
    hooks=hooks,
    statistics=statistics,
    figures={
        "training": training,
        "stability": stability,
        "accuracy": accuracy,
        "dependence": dependence,
    },
)
