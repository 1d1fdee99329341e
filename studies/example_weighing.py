"""Does inference example weighing (w ≈ 1/B) close BN's train/inference gap and help accuracy?

Claim EX-WEIGH (``CLAIMS.md``; Summers & Dinneen 2019): normalizing each test example with
μ = (1 − w) μ_pop + w μ_i (and the matching mixture variance), w ≈ 1/B, reduces the
train/inference discrepancy and improves test accuracy. Registered statistics, each paired within
a net (w = 1/B vs w = 0) and averaged over batch sizes within a seed: ``acc_gain`` (test accuracy,
> 0); at w = 0 minus at w = 1/B on training batches of size B (> 0: weighing reduces it):
``output_gap_reduction`` (‖f_train − f_eval‖_F / ‖f_eval‖_F), ``abs_loss_gap_reduction``
(|eval − train loss|), ``signed_loss_gap_change`` (two-sided). Check ``bn_trained``: the test
accuracy at w = 0 (the final test accuracy, `normtheory.analysis.FINAL_METRIC_POLICY`).

Protocol: a BN convnet (width 16, depth 3) trained on the digits at batch sizes 8 and 32 (9600
examples each, LR scaled with √B); the end-of-training hook `ExampleWeighing` then evaluates the
same model at w ∈ {0, ¼, ½, 1, 2, 4} / B on the test set, and on 16 training batches of size B
in train mode (own statistics) and eval mode. ``standard``: Fashion-MNIST (20 000 training
examples), a depth-4 net, 10 epochs at each batch size (equal epochs; the LR rule as above).

``paper`` reproduces Summers & Dinneen 2019's inference example weighing (Sec. 3.1, ResNets on
CIFAR-100, w = 1/B at test time) on CIFAR-10, the one CIFAR here: a ResNet-18-like net (He et
al.'s ResNet-20 of width 64, 4.3 M parameters) with random crop + flip, trained at batch 8 and 32
(the small batches where the discrepancy is large), SGD with momentum 0.9, LR 0.1·B/128, weight
decay 5e-4, cosine decay, 20 epochs; 5 seeds.
"""

from dataclasses import replace

import pandas as pd

from normtheory.analysis import final_outcomes, means_text, metric, paired, seed_table
from normtheory.evidence import CheckValue, sample
from normtheory.experiment import PAPER_DATA, PAPER_EPOCH, STANDARD_DATA, TrainCell, cell_data
from normtheory.hooks import ExampleWeighing, LossAccuracy, every
from normtheory.plots import ci_line, finish, hue_palette, missing_figure, panels, summarize_ci
from normtheory.results import Results
from normtheory.study import Grid, Profile, Study

BASE = TrainCell(dataset="digits", arch="convnet", norm="batch", width=16, depth=3,
                 optimizer="sgd", lr=0.05, lr_scaling="sqrt", ref_batch=32, momentum=0.9,
                 batch_size=32, examples=9600)  # fmt: skip
# Fashion-MNIST, a depth-4 net, 10 epochs at every batch size (88–89 % test accuracy at batch 32).
STANDARD = replace(BASE, **STANDARD_DATA, depth=4, examples=0, epochs=10)
# CIFAR-10 (crop + flip), a ResNet-18-like ResNet-20 of width 64, LR 0.1 at batch 128 scaled
# linearly, weight decay 5e-4, cosine, 20 epochs (as examples: `PAPER_EPOCH`).
PAPER = replace(BASE, **PAPER_DATA, arch="resnet", width=64, depth=20, lr=0.1, lr_scaling="linear",
                ref_batch=128, weight_decay=5e-4, schedule="cosine", examples=20 * PAPER_EPOCH)  # fmt: skip
MULTIPLES = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)  # w = multiple / B


def hooks(cell: TrainCell):
    train_set, test_set = cell_data(cell)
    return [LossAccuracy(every=every(20)), ExampleWeighing(train_set=train_set,
            test_set=test_set, batch_size=cell.batch_size, multiples=MULTIPLES)]  # fmt: skip


def weighing_table(results: Results) -> pd.DataFrame:
    """Tidy: batch_size, seed, metric (test_acc, test_loss, loss_gap, …), value, multiple, w."""
    rec = metric(results.records, ExampleWeighing.METRICS)
    table = rec[["batch_size", "seed", "metric", "value"]].copy()
    table["metric"] = table["metric"].str.removeprefix(ExampleWeighing.PREFIX)
    table["multiple"] = rec["key"].astype(float).to_numpy()
    table["w"] = (table["multiple"] / table["batch_size"]).clip(upper=1.0)
    return table


# statistic: (metric, multiple a, multiple b, of |value|): per seed, the metric at a − at b
CHANGES = {
    "acc_gain": ("test_acc", 1.0, 0.0, False),
    "output_gap_reduction": ("output_gap", 0.0, 1.0, False),
    "abs_loss_gap_reduction": ("loss_gap", 0.0, 1.0, True),
    "signed_loss_gap_change": ("loss_gap", 0.0, 1.0, False),
}


def _change(table: pd.DataFrame, name: str, a: float, b: float, size: bool) -> pd.Series:
    """Per seed, `name` at multiple a − at b (of |value| when `size`), mean over batch sizes."""
    rows = table[table["metric"] == name]
    rows = rows.assign(value=rows["value"].abs()) if size else rows
    return paired(seed_table(rows, "value", "multiple", within="batch_size"), a, b)


def statistics(results: Results):
    """EX-WEIGH: the four registered changes from w = 0 to w = 1/B (`CHANGES`), per seed, and
    the check ``bn_trained``, the mean final test accuracy (w = 0)."""
    table = weighing_table(results)
    if table.empty:
        return []
    means = table.groupby(["metric", "batch_size", "multiple"])["value"].mean()

    def at(name, fmt, multiples=(0.0, 1.0), sep=" → "):
        rows = means[name].unstack("multiple").iterrows()  # batch size × multiple
        return "; ".join(f"B={b}: " + sep.join(f"{r[m]:{fmt}}" for m in multiples) for b, r in rows)

    details = {
        "test_acc": "test accuracy (mean over seeds) at w = 0 / ¼B⁻¹ / ½B⁻¹ / B⁻¹ / 2B⁻¹ / 4B⁻¹ — "
        + at("test_acc", ".3f", MULTIPLES, " / "),
        "loss_gap": "eval − train loss (signed) on training batches at w = 0 → 1/B — "
        + at("loss_gap", "+.3f"),
        "output_gap": "‖f_train − f_eval‖ / ‖f_eval‖ at w = 0 → 1/B — " + at("output_gap", ".3f"),
    }
    final = final_outcomes(results.cells)
    by_size = means_text(final, "test_acc", "batch_size", prefix="B=")
    detail = f"test accuracy at w = 0 by batch size — {by_size}"
    check = CheckValue("EX-WEIGH", "bn_trained", float(final["test_acc"].mean()), detail)
    return [
        sample("EX-WEIGH", name, _change(table, *spec), detail=details[spec[0]])
        for name, spec in CHANGES.items()
    ] + [check]


def weighing(results: Results):
    """Test accuracy and train/inference gaps as functions of w·B, per training batch size."""
    table = weighing_table(results)
    if table.empty:
        return missing_figure("Inference example weighing", ["exw.* records"])
    acc = table[table["metric"] == "test_acc"].sort_values("multiple")  # w = 0 first
    at0 = acc.groupby(["batch_size", "seed"])["value"].transform("first")
    table = pd.concat([table, acc.assign(metric="acc_change", value=acc["value"] - at0)])
    colors = hue_palette(sorted(table["batch_size"].unique()), "batch_size")
    spec = {"acc_change": ("Test accuracy gain", "test accuracy − at w = 0 (same net)"),
            "loss_gap": ("Train/inference loss gap", "eval − train loss, training batches"),
            "output_gap": ("Train/inference output gap", "‖f_train − f_eval‖ / ‖f_eval‖")}  # fmt: skip
    fig, axes = panels(3)
    for ax, (name, (_, label)) in zip(axes, spec.items()):
        for b, sub in table[table["metric"] == name].groupby("batch_size"):
            s = summarize_ci(sub, ["multiple"], "value")
            s["multiple"] = s["multiple"].replace(0.0, 0.1)  # w = 0 at the log axis's left edge
            clip = (0, None) if name == "output_gap" else (None, None)  # a ratio of norms
            ci_line(ax, s, "multiple", color=colors[b], label=f"trained at B = {b}", clip=clip)
        if name != "output_gap":
            ax.axhline(0, color="gray", ls="--", lw=1)
        ax.axvline(1, color="gray", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xticks([0.1, *MULTIPLES[1:]], ["0", "¼", "½", "1", "2", "4"])
        ax.minorticks_off()
        ax.set_ylabel(label)
    return finish(
        fig,
        axes,
        title="Inference example weighing of one trained BN net (mean, 95% t-CI over seeds)",
        titles=[title for title, _ in spec.values()],
        xlabel="example weight w × B (w = 0 at the left)",
    )


STUDY = Study(
    name="example_weighing",
    title="Inference example weighing in Batch Normalization",
    claims=("EX-WEIGH",),
    reference=("quick", "standard"),
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
        "standard": Profile(
            Grid(STANDARD, {"batch_size": (8, 32)}),
            seeds=5,
            description="Fashion-MNIST (20 000), BN convnet depth 4 at batch 8 and 32, 10 epochs, "
            "6 example weights, 5 seeds",
            cost="≈10 min on 2 CPU cores",
        ),
        "paper": Profile(
            Grid(PAPER, {"batch_size": (8, 32)}),
            seeds=5,
            description="CIFAR-10 (crop + flip), BN ResNet-20 of width 64 at batch 8 and 32, 20 "
            "epochs, 6 example weights, 5 seeds",
            cost="≈1.3 h on one H100-class GPU (estimate, not measured: 780 k steps at ≈6 ms)",
            smoke={"max_train": 128, "examples": 64, "width": 4},
        ),
    },
    hooks=hooks,
    statistics=statistics,
    figures={"weighing": weighing},
)
