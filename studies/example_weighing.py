"""Does inference example weighing (w ≈ 1/B) close BN's train/inference gap and help accuracy?

Claim EX-WEIGH (``CLAIMS.md``; Summers & Dinneen 2019): at inference, normalizing each example
with μ = (1 − w) μ_pop + w μ_i (and the matching mixture variance), w ≈ 1/B, reduces the
train/inference discrepancy and improves test accuracy. Registered statistics
(``normtheory/claims.toml``), each paired within a net (w = 1/B vs w = 0) and averaged over the
training batch sizes within a seed: ``acc_gain``, test accuracy at w = 1/B − at w = 0 (> 0); and
three measures of the train/inference discrepancy on training batches of size B, each at w = 0
minus at w = 1/B (> 0: weighing reduces it): ``output_gap_reduction``, of the relative output gap
‖f_train − f_eval‖_F / ‖f_eval‖_F over the batch; ``abs_loss_gap_reduction``, of the size of the
loss gap |eval-mode loss − train-mode loss|; ``signed_loss_gap_change``, of the signed loss gap
(two-sided). Check ``bn_trained``: the test accuracy at w = 0 (the standard evaluation).

Protocol: a BN convnet (width 16, depth 3) is trained on the digits at batch sizes 8 and 32 (9600
examples seen at each, learning rate scaled with √B); then, without retraining, the same model is
evaluated with w ∈ {0, ¼, ½, 1, 2, 4} / B (`normtheory.measure.outcomes.example_weighing`) on the
test set, and its train/inference discrepancy is measured on 16 training batches of size B
(`train_eval_discrepancy`: the same batch in train mode, with its own statistics, and in eval
mode). Small nets on offline data will not reproduce ImageNet numbers: the verdict is about the
direction and size of the effect at this scale.
"""

import numpy as np
import pandas as pd
import torch
from matplotlib import pyplot as plt

from normtheory.experiment import TrainCell, build_cell_model, cell_data
from normtheory.hooks import LossAccuracy
from normtheory.measure.outcomes import evaluate, example_weighing, train_eval_discrepancy
from normtheory.report.figures import missing_figure, summarize_ci
from normtheory.study import Grid, Profile, Results, Study
from normtheory.train import train
from normtheory.verdicts import CheckValue, sample

BASE = TrainCell(
    dataset="digits",
    arch="convnet",
    norm="batch",
    width=16,
    depth=3,
    optimizer="sgd",
    lr=0.05,
    lr_scaling="sqrt",
    ref_batch=32,
    momentum=0.9,
    batch_size=32,
    examples=9600,
)
MULTIPLES = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)  # w = multiple / B
N_BATCHES = 16
COLORS = {4: "tab:red", 8: "tab:orange", 32: "tab:blue", 128: "tab:green"}


def hooks(cell: TrainCell):
    return [LossAccuracy(every=20)]


def run_cell(cell: TrainCell, seed: int, *, device="auto", hooks=(), progress=None):
    """Trains the BN net, then evaluates it at every example weight without retraining."""
    train_set, test_set = cell_data(cell)
    model = build_cell_model(cell, train_set.in_shape, train_set.num_classes, seed)
    result = train(
        model, train_set, test_set, cell.train_config(seed, device), hooks, progress=progress
    )
    if result.status != "completed":
        return result
    b = cell.batch_size
    gen = torch.Generator().manual_seed(1000 + seed)  # local: the global RNG stays untouched
    batches = [torch.randperm(len(train_set), generator=gen)[:b] for _ in range(N_BATCHES)]
    dev = next(model.parameters()).device
    rows = []
    for m in MULTIPLES:
        w = min(m / b, 1.0)
        with example_weighing(model, w):
            test = evaluate(model, test_set)
            gaps = [
                train_eval_discrepancy(
                    model, train_set.inputs[i].to(dev), train_set.targets[i].to(dev)
                )
                for i in batches
            ]
        key = f"{m:g}"
        rows += [
            ("exw.test_acc", key, test["acc"]),
            ("exw.test_loss", key, test["loss"]),
            ("exw.loss_gap", key, float(np.mean([g["loss_gap"] for g in gaps]))),
            ("exw.output_gap", key, float(np.mean([g["output_gap"] for g in gaps]))),
        ]
    extra = pd.DataFrame(rows, columns=["metric", "key", "value"]).assign(step=result.steps_done)
    result.records = pd.concat([result.records, extra[result.records.columns]], ignore_index=True)
    return result


def weighing_table(results: Results) -> pd.DataFrame:
    """Tidy: batch_size, seed, multiple (w·B), w, metric (test_acc, test_loss, loss_gap,
    output_gap), value."""
    rec = results.records
    rec = rec[rec["metric"].str.startswith("exw.")]
    if rec.empty:
        return pd.DataFrame()
    table = rec[["batch_size", "seed", "metric", "value"]].copy()
    table["metric"] = table["metric"].str.removeprefix("exw.")
    table["multiple"] = rec["key"].astype(float).to_numpy()
    table["w"] = (table["multiple"] / table["batch_size"]).clip(upper=1.0)
    return table


def statistics(results: Results):
    """EX-WEIGH: per seed, averaged over the training batch sizes, the change from w = 0 to
    w = 1/B of the test accuracy (``acc_gain``) and the reduction of the output gap, of the size
    of the loss gap and of the signed loss gap; the check ``bn_trained`` is the test accuracy at
    w = 0 (mean over batch sizes and seeds)."""
    table = weighing_table(results)
    if table.empty:
        return []
    wide = table.pivot_table(
        index=["batch_size", "seed"], columns=["metric", "multiple"], values="value"
    )
    acc, gap, out = wide["test_acc"], wide["loss_gap"], wide["output_gap"]
    means = wide.groupby(level="batch_size").mean()  # rows B; columns (metric, multiple)
    sizes = list(means.index)

    def per_seed(values: pd.Series) -> pd.Series:
        return values.groupby(level="seed").mean()  # mean over batch sizes within a seed

    def change(metric: str, fmt: str) -> str:
        return "; ".join(
            f"B={b}: {means.loc[b, (metric, 0.0)]:{fmt}} → {means.loc[b, (metric, 1.0)]:{fmt}}"
            for b in sizes
        )

    acc_detail = (
        "test accuracy (mean over seeds) at w = 0 / ¼B⁻¹ / ½B⁻¹ / B⁻¹ / 2B⁻¹ / 4B⁻¹ — "
        + "; ".join(
            f"B={b}: " + " / ".join(f"{means.loc[b, ('test_acc', m)]:.3f}" for m in MULTIPLES)
            for b in sizes
        )
    )
    gap_detail = "eval − train loss (signed) on training batches at w = 0 → 1/B — " + change(
        "loss_gap", "+.3f"
    )
    out_detail = "‖f_train − f_eval‖ / ‖f_eval‖ at w = 0 → 1/B — " + change("output_gap", ".3f")
    return [
        sample("EX-WEIGH", "acc_gain", per_seed(acc[1.0] - acc[0.0]), detail=acc_detail),
        sample(
            "EX-WEIGH", "output_gap_reduction", per_seed(out[0.0] - out[1.0]), detail=out_detail
        ),
        sample(
            "EX-WEIGH",
            "abs_loss_gap_reduction",
            per_seed(gap[0.0].abs() - gap[1.0].abs()),
            detail=gap_detail,
        ),
        sample(
            "EX-WEIGH",
            "signed_loss_gap_change",
            per_seed(gap[0.0] - gap[1.0]),
            detail=gap_detail,
        ),
        CheckValue(
            "EX-WEIGH",
            "bn_trained",
            float(acc[0.0].mean()),
            detail="test accuracy at w = 0 by batch size — "
            + ", ".join(f"B={b}: {means.loc[b, ('test_acc', 0.0)]:.3f}" for b in sizes),
        ),
    ]


def weighing(results: Results):
    """Test accuracy and train/inference gaps as functions of w·B, per training batch size."""
    table = weighing_table(results)
    if table.empty:
        return missing_figure("example weighing", ["exw.* records"])
    panels = (
        ("acc_change", "test accuracy − at w = 0 (same net)", "Test accuracy gain"),
        ("loss_gap", "eval − train loss, training batches", "Train/inference loss gap"),
        ("output_gap", "‖f_train − f_eval‖ / ‖f_eval‖", "Train/inference output gap"),
    )
    acc = table[table["metric"] == "test_acc"].set_index(["batch_size", "seed", "multiple"])
    at0 = acc.xs(0.0, level="multiple")["value"]
    change = acc["value"].sub(at0.reindex(acc.index.droplevel("multiple")).to_numpy())
    change = change.reset_index().assign(metric="acc_change")
    table = pd.concat([table, change], ignore_index=True)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (metric, label, title) in zip(axes, panels):
        if metric != "output_gap":
            ax.axhline(0, color="gray", ls="--", lw=1)
        for b, sub in table[table["metric"] == metric].groupby("batch_size"):
            s = summarize_ci(sub, ["multiple"], "value")
            x = s["multiple"].replace(0.0, 0.1)  # w = 0 drawn at the left edge of the log axis
            ax.plot(x, s["mean"], "o-", color=COLORS.get(b), label=f"trained at B = {b}", ms=4)
            low = s["low"].clip(lower=0) if metric == "output_gap" else s["low"]  # a norm ratio
            ax.fill_between(x, low, s["high"], color=COLORS.get(b), alpha=0.2, lw=0)
        ax.set_xscale("log")
        ax.set_xticks([0.1, 0.25, 0.5, 1, 2, 4], ["0", "¼", "½", "1", "2", "4"])
        ax.minorticks_off()
        ax.axvline(1, color="gray", ls=":", lw=1)
        ax.set(xlabel="example weight w × B (w = 0 at the left)", ylabel=label, title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Inference example weighing of one trained BN net (mean, 95% CI over seeds)")
    fig.tight_layout()
    return fig


STUDY = Study(
    name="example_weighing",
    title="Inference example weighing in Batch Normalization",
    claims=("EX-WEIGH",),
    profiles={
        "quick": Profile(
            Grid(BASE, {"batch_size": (8, 32)}),
            seeds=6,
            description="BN trained at batch 8 and 32, 9600 examples, 6 example weights, 6 seeds",
        ),
        "full": Profile(
            Grid(BASE, {"batch_size": (4, 8, 32, 128), "examples": (40000,)}),
            seeds=8,
            description="BN trained at batch 4, 8, 32, 128, 40000 examples, 6 example weights, 8 seeds",
        ),
    },
    hooks=hooks,
    run_cell=run_cell,
    statistics=statistics,
    figures={"weighing": weighing},
)
