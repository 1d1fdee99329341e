"""Where should BN go relative to ReLU, and does the IC layer (ReLU → BN → Dropout) help?

Claims (``CLAIMS.md``; Chen et al. 2019, "Rethinking the usage of batch normalization and
dropout in the training of deep neural networks"):
- IC-ORDER (empirical): Weight → ReLU → BN → Dropout → Weight trains faster and more stably than
  Weight → BN → ReLU at equal epochs. Statistics, paired by seed: the area under the
  training-loss curve (mean training loss over the run) of W→BN→ReLU minus that of the IC
  ordering (> 0: IC faster; primary), and the final test accuracy of IC minus W→BN→ReLU (> 0;
  secondary), one value per seed (averaged over datasets within a seed). The IC net's training
  loss is measured with its dropout on, which handicaps it; the detail also gives the eval-mode
  test-loss area, the steps to reach a training loss of 0.3, and the seed spread. Check: the
  W→BN→ReLU baseline trains (mean final test accuracy).
- IC-SIGN (mechanism): a weight layer fed by ReLU output (W→BN→ReLU→W) has non-negative inputs,
  so every per-sample weight-gradient row δ_o x is one-signed: same-sign fraction 1.0 (exact);
  with BN after the ReLU it is near 0.5. Statistic: 1 − the smallest same-sign fraction over the
  layers fed by ReLU in W→BN→ReLU, over steps and seeds (registered tolerance 0).

Protocol: a 3-layer convnet (width 16) on the digits, SGD with momentum 0.9, η = 0.05, batch 32,
300 steps; placements ``norm_act`` (W→BN→ReLU), ``act_norm`` (W→ReLU→BN) and ``ic``
(W→ReLU→BN→Dropout, keep 0.9). `NeuronInformation` records, every 50 steps on 512 fixed
training examples (train mode), the mean |correlation| and binned MI between the channels that
feed each weight layer (spatially pooled) and the same-sign fraction.
"""

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from normtheory.experiment import TrainCell, probe_batch
from normtheory.hooks import LossAccuracy, NeuronInformation
from normtheory.report.figures import missing_figure, summarize_ci
from normtheory.study import Grid, Profile, Results, Study
from normtheory.verdicts import CheckValue, Exact, sample

BASE = TrainCell(
    dataset="digits",
    arch="convnet",
    norm="batch",
    width=16,
    depth=3,
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    batch_size=32,
    steps=300,
    eval_every=20,
)
CASES = (
    {"tag": "W→BN→ReLU", "placement": "norm_act", "dropout_keep": 1.0},
    {"tag": "W→ReLU→BN", "placement": "act_norm", "dropout_keep": 1.0},
    {"tag": "IC: W→ReLU→BN→Drop", "placement": "ic", "dropout_keep": 0.9},
)
ORDER = [c["tag"] for c in CASES]
BASELINE, IC = ORDER[0], ORDER[2]
COLORS = dict(zip(ORDER, sns.color_palette("Dark2", 3)))
TARGET_LOSS = 0.3
RUN = ["dataset", "tag", "seed"]


def hooks(cell: TrainCell):
    return [
        LossAccuracy(every=5),
        NeuronInformation(probe=probe_batch(cell, 512), every=50, max_units=32),
    ]


def _metric(results: Results, metric: str) -> pd.DataFrame:
    rec = results.records
    return rec[rec["metric"] == metric]


def per_run(results: Results) -> pd.DataFrame:
    """One row per (dataset, tag, seed): training-loss area, test-loss area, steps to the target
    loss, final test accuracy (NaN for a cell that did not complete)."""
    train = _metric(results, "outcome.train_loss")
    test = _metric(results, "outcome.test_loss")
    if train.empty:
        return pd.DataFrame()

    def to_target(g):
        smooth = g.sort_values("step")["value"].rolling(5, min_periods=1).mean()
        hit = g.sort_values("step")["step"][smooth.to_numpy() < TARGET_LOSS]
        return float(hit.iloc[0]) if len(hit) else np.nan

    rows = pd.DataFrame(
        {
            "train_auc": train.groupby(RUN)["value"].mean(),
            "test_auc": test.groupby(RUN)["value"].mean(),
            "steps_to_target": train.groupby(RUN).apply(to_target, include_groups=False),
        }
    )
    cells = results.cells.set_index(RUN)
    rows["final_test_acc"] = cells["final_test_acc"].where(cells["status"] == "completed")
    return rows.reset_index()


def _gain(runs: pd.DataFrame, column: str, better: str, worse: str) -> pd.Series:
    """Per seed: `column` of `better` − `worse`, paired within a dataset, averaged over datasets
    (NaN, so dropped, when a run of the seed is missing)."""
    wide = runs.pivot(index=["dataset", "seed"], columns="tag", values=column)
    return (wide[better] - wide[worse]).groupby(level="seed").agg(lambda d: d.mean(skipna=False))


def _order_detail(runs: pd.DataFrame) -> str:
    spread = runs.groupby("tag")["final_test_acc"].std()
    reach = runs.groupby("tag")["steps_to_target"].median()
    parts = [
        f"{t}: test-loss area {runs[runs.tag == t]['test_auc'].mean():.3f}, steps to training "
        f"loss {TARGET_LOSS} (median) {reach.get(t, np.nan):.0f}, final test acc "
        f"{runs[runs.tag == t]['final_test_acc'].mean():.3f} ± {spread.get(t, np.nan):.3f} (sd over seeds)"
        for t in ORDER
        if t in set(runs["tag"])
    ]
    return "; ".join(parts) + ". The IC net's training loss includes its dropout noise."


def statistics(results: Results):
    out = []
    runs = per_run(results)
    if len(runs) and {BASELINE, IC} <= set(runs["tag"]):
        detail = _order_detail(runs)
        out += [
            sample(
                "IC-ORDER", "train_auc_gain", _gain(runs, "train_auc", BASELINE, IC), detail=detail
            ),
            sample(
                "IC-ORDER",
                "test_acc_gain",
                _gain(runs, "final_test_acc", IC, BASELINE),
                detail=detail,
            ),
        ]
        base = runs[runs["tag"] == BASELINE]["final_test_acc"]
        out.append(
            CheckValue(
                "IC-ORDER",
                "baseline_trained",
                float(base.mean()),
                detail=f"{BASELINE}: mean final test accuracy over {base.notna().sum()} runs",
            )
        )
    sign = _metric(results, "info.same_sign")
    if len(sign):
        fed_by_relu = sign[(sign["tag"] == BASELINE) & (sign["key"] != "conv1")]
        others = sign[sign["key"] != "conv1"].groupby("tag")["value"].mean()
        detail = "mean same-sign fraction of the layers after the first — " + "; ".join(
            f"{t}: {others[t]:.3f}" for t in ORDER if t in others
        )
        out.append(
            Exact(
                "IC-SIGN",
                "one_minus_same_sign",
                float(1 - fed_by_relu["value"].min()) if len(fed_by_relu) else np.nan,
                n=fed_by_relu["seed"].nunique(),
                detail=detail,
            )
        )
    return out


def training(results: Results):
    """Training-loss curves per placement and the final test accuracy."""
    train = _metric(results, "outcome.train_loss")
    runs = per_run(results)
    if train.empty:
        return missing_figure("training", ["outcome.train_loss records"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    for tag in ORDER:
        sub = train[train["tag"] == tag]
        if len(sub):
            s = summarize_ci(sub, ["step"], "value", log=True)
            ax1.plot(s["step"], s["mean"], color=COLORS[tag], label=tag)
            ax1.fill_between(s["step"], s["low"], s["high"], color=COLORS[tag], alpha=0.2, lw=0)
    ax1.axhline(TARGET_LOSS, color="gray", ls=":", lw=1, label=f"target {TARGET_LOSS}")
    ax1.set(
        yscale="log",
        xlabel="step",
        ylabel="training loss (log; IC: dropout on)",
        title="Training loss per placement",
    )
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    sns.pointplot(
        data=runs,
        x="tag",
        y="final_test_acc",
        hue="tag",
        order=ORDER,
        hue_order=ORDER,
        palette=COLORS,
        errorbar=("ci", 95),
        ax=ax2,
        legend=False,
    )
    sns.stripplot(
        data=runs, x="tag", y="final_test_acc", order=ORDER, color="k", size=3, ax=ax2, alpha=0.5
    )
    ax2.set(xlabel="", ylabel="final test accuracy", title="Final test accuracy (dots: seeds)")
    ax2.tick_params(axis="x", labelsize=7, rotation=15)
    ax2.grid(alpha=0.3)
    fig.suptitle(
        "Training with BN before or after ReLU, and the IC layer (mean, 95% CI over seeds)"
    )
    fig.tight_layout()
    return fig


def dependence(results: Results):
    """Mean |corr| and MI between the channels feeding each weight layer, and the same-sign
    fraction, over training (layers after the first, averaged)."""
    rec = results.records
    rec = rec[rec["metric"].str.startswith("info.") & (rec["key"] != "conv1")]
    if rec.empty:
        return missing_figure("dependence", ["info.* records"])
    panels = {
        "info.corr_abs": ("mean |correlation| of layer inputs", "Correlation between channels"),
        "info.mi": ("mean MI of layer inputs (nats, binned)", "Mutual information"),
        "info.same_sign": ("same-sign fraction of gradient rows", "Signs of gradient rows"),
    }
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (metric, (label, title)) in zip(axes, panels.items()):
        for tag in ORDER:
            sub = rec[(rec["metric"] == metric) & (rec["tag"] == tag)]
            if len(sub):
                per_seed = sub.groupby(["step", "seed"], as_index=False)["value"].mean()
                s = summarize_ci(per_seed, ["step"], "value")
                ax.plot(s["step"], s["mean"], "o-", ms=3, color=COLORS[tag], label=tag)
                ax.fill_between(s["step"], s["low"], s["high"], color=COLORS[tag], alpha=0.2, lw=0)
        ax.set(xlabel="step", ylabel=label, title=title)
        ax.grid(alpha=0.3)
    axes[2].axhline(0.5, color="gray", ls=":", lw=1, label="0.5 (random signs)")
    axes[2].legend(fontsize=8, loc="center right")
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "Dependence between the channels entering layers 2…L+head (512 probe examples, train mode)"
    )
    fig.tight_layout()
    return fig


STUDY = Study(
    name="ic_layer",
    title="BN before or after ReLU, and the IC layer: convergence, stability, gradient signs",
    claims=("IC-ORDER", "IC-SIGN"),
    profiles={
        "quick": Profile(
            Grid(BASE, {}, CASES), seeds=5, description="3 placements, 300 steps, 5 seeds"
        ),
        "full": Profile(
            Grid(BASE, {"dataset": ("digits", "mnist1d")}, CASES),
            seeds=8,
            description="3 placements × digits, mnist1d, 300 steps, 8 seeds",
        ),
    },
    hooks=hooks,
    statistics=statistics,
    figures={"training": training, "dependence": dependence},
)
