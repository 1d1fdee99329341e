"""Normalizer-free ResNets and binary nets without BN: accuracy against BN, and the learning
rates adaptive gradient clipping makes stable.

Claims (``CLAIMS.md``; registered tests in ``normtheory/claims.toml``), one value per seed:
- NF-MATCH (Brock et al. 2021a, b): an NF-ResNet (``norm="nf"``: scaled WS, h + α·s·f(h/β),
  SkipInit gain; AGC λ = 0.01) is at most one point less accurate than the BN ResNet:
  ``nf_vs_bn`` = acc(NF+AGC) − acc(BN) per batch size, non-inferiority > −0.01; check
  ``bn_trained`` (BN's lowest mean accuracy over batch sizes ≥ 0.85).
- AGC-LR (Brock et al. 2021b): ``log10_lr_ratio`` = log10(max stable LR NF+AGC / NF) at the
  largest batch size, each by bisection in log(LR) (`normtheory.stability`; bracket [0.4, 4]
  verified first, ends moved out by 10^0.5 at most 4 times, halved to narrower than 10^0.15;
  stable: no divergence and a final training loss below ln(10)/2), > log10 2; secondary
  ``log10_lr_ratio_small`` at the smallest batch where a profile searches there; check
  ``bracketed``.
- BNN-NOBN (Chen et al. 2021): ``bnn_nf_vs_bn`` = acc(binary NF-ResNet + AGC) − acc(binary
  BN ResNet) per batch size, non-inferiority > −0.01; check ``bnn_bn_trained`` ≥ 0.80.

Protocol: ResNet-8 (width 8) on the digits, SGD with momentum 0.9. Accuracy cells (BN, NF+AGC and
their binary versions) train 15 epochs, cosine to 0, each at the learning rate of `LRS`: the
lowest mean validation error among 0.1 · 4^k (k = −2 … 4, 0.00625 … 25.6), trained on the
training set minus a stratified 20 % validation part on tuning seed 1000 (profile ``tune``;
`normtheory.tuning`; the test split never chooses, the verdict seeds are 0–4). Search cells
(`NFCell.search`) run the bisection instead, 50 steps per probe at a constant LR. ``quick``:
accuracy cells at batch 64, searches (NF and NF+AGC) at batch 256, 5 seeds. ``standard``:
Fashion-MNIST (20 000 training examples), width 16, accuracy cells at batch 64 and 256 for 5
epochs (the LR table's rates where tuned, else those of the digits' batch-64 cells, scaled
linearly), searches of NF, NF+AGC, BN and no norm at batch 256 and of NF and NF+AGC at 64, 200
steps per probe, 5 seeds. ``paper``: CIFAR-10 with crops and flips, ResNet-20 (width 16), batch
256, LR 0.1·B/256 for BN (the papers' rule), 0.4 for the NF nets with AGC (λ = 0.01; untuned:
tune on a validation split first), weight decay 5·10⁻⁵ as NFNets, 90 epochs cosine, searches at
batch 1024, 500 steps per probe, 5 seeds.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from normtheory import plots
from normtheory.analysis import changes, final_outcomes
from normtheory.evidence import CheckValue, per_condition, sample
from normtheory.experiment import PAPER_DATA, STANDARD_DATA, TrainCell, cell_data, run_train_cell
from normtheory.hooks import LossAccuracy
from normtheory.results import Results
from normtheory.stability import PROBE, StabilityRule, lr_search, max_stable_lr, probe_table
from normtheory.study import Grid, Profile, Study
from normtheory.tuning import LrTable, tuning_figure, tuning_profile


@dataclass(frozen=True)
class NFCell(TrainCell):
    """A `TrainCell` whose ``search=True`` runs the bisection for the max stable LR instead of
    one training run."""

    search: bool = False


AGC = 0.01  # the paper's λ (NFNets at batch 4096)
BASE = NFCell(dataset="digits", arch="resnet", width=8, depth=8, optimizer="sgd", lr=0.1,
              momentum=0.9, batch_size=64, epochs=15, schedule="cosine")  # fmt: skip
ACC = {
    "BN": {"tag": "BN", "norm": "batch"},
    "NF+AGC": {"tag": "NF+AGC", "norm": "nf", "agc": AGC},
    "BNN+BN": {"tag": "BNN+BN", "norm": "batch", "binary": True},
    "BNN+NF+AGC": {"tag": "BNN+NF+AGC", "norm": "nf", "agc": AGC, "binary": True},
}
_SEARCH = {"search": True, "epochs": 0, "steps": 50, "schedule": "constant"}
SEARCH = {
    "NF+AGC": {"tag": "NF+AGC search", "norm": "nf", "agc": AGC, **_SEARCH},
    "NF": {"tag": "NF search", "norm": "nf", **_SEARCH},
    "BN": {"tag": "BN search", "norm": "batch", **_SEARCH},
    "none": {"tag": "no norm search", "norm": "none", **_SEARCH},
}
BRACKET = dict(lo=0.4, hi=4.0, resolution=0.15, widen=0.5, max_widen=4)
SHARE = 2.0  # stable: final training loss < ln(K) / 2
ORDER = ["BN", "NF+AGC", "BNN+BN", "BNN+NF+AGC", *[c["tag"] for c in SEARCH.values()]]
_PAL = plots.norm_palette(["batch", "nf", "none", "frn"])
COLORS = {"BN": _PAL["batch"], "NF+AGC": _PAL["nf"], "BNN+BN": _PAL["batch"],
          "BNN+NF+AGC": _PAL["nf"], "NF+AGC search": _PAL["nf"], "NF search": _PAL["frn"],
          "BN search": _PAL["batch"], "no norm search": _PAL["none"]}  # fmt: skip
# Chosen by `normtheory run normalizer_free --profile tune --device cpu`, then
# `normtheory.tuning.lr_table_source(load_cells(<run>), keys=("tag", "batch_size"))`: the lowest
# validation error on tuning seed 1000 (none at the edge of the candidates; lr_tuning figure).
# Validation errors there: BN 1.9 %, NF+AGC 2.6 %, binary BN 5.2 %, binary NF+AGC 15.6 %.
LRS = LrTable(
    {
        ("BN", 64): 0.4,
        ("BNN+BN", 64): 0.4,
        ("BNN+NF+AGC", 64): 6.4,
        ("NF+AGC", 64): 6.4,
    },
    command="normtheory run normalizer_free --profile tune",
    keys=("tag", "batch_size"),
)


def _cases(acc_batches, search_batches, searched=("NF+AGC", "NF")):
    acc = [{**c, "batch_size": b} for c in ACC.values() for b in acc_batches]
    found = [{**SEARCH[k], "batch_size": b} for b in search_batches for k in searched]
    return tuple(acc + found)


QUICK = Grid(BASE, cases=_cases([64], [256]), adjust=LRS)
STANDARD = Grid(dataclasses.replace(BASE, **STANDARD_DATA, width=16, epochs=5),
                cases=_cases([64, 256], [256], ("NF+AGC", "NF", "BN", "none")) + tuple({**SEARCH[k], "batch_size": 64}
                                                       for k in ("NF+AGC", "NF")),
                adjust=lambda c: _standard_lr(LRS(c)))  # fmt: skip
PAPER = Grid(dataclasses.replace(BASE, **PAPER_DATA, width=16, depth=20, batch_size=256, epochs=0,
                                 steps=17550, weight_decay=5e-5),
             cases=_cases([256], [1024], ("NF+AGC", "NF", "BN", "none")),
             adjust=lambda c: dataclasses.replace(c, lr=0.1 if c.norm == "batch" else 0.4,
                                                  steps=min(500, c.steps) if c.search else c.steps))  # fmt: skip


def _standard_lr(cell):
    """A batch the table lacks gets the digits' batch-64 rate scaled linearly with the batch."""
    lr = LRS.lrs.get((cell.tag, 64))
    if cell.search or (cell.tag, cell.batch_size) in LRS.lrs or lr is None:
        return dataclasses.replace(cell, steps=200) if cell.search else cell
    return dataclasses.replace(cell, lr=lr * cell.batch_size / 64)


def hooks(cell: TrainCell):
    return [LossAccuracy(every=1 if getattr(cell, "search", False) else 10)]


def run_cell(cell: NFCell, seed: int, *, hooks=(), **kw):
    """A search cell: the bisection for its max stable LR; any other: one training run."""
    if not cell.search:
        return run_train_cell(cell, seed, hooks=hooks, **kw)
    rule = StabilityRule.for_classes(cell_data(cell)[0].num_classes, SHARE)
    train_at = lambda lr: run_train_cell(dataclasses.replace(cell, lr=lr), seed, hooks=hooks, **kw)  # noqa: E731
    return lr_search(train_at, rule, train_loss=LossAccuracy.TRAIN_LOSS, **BRACKET)


def _accuracy(results: Results) -> pd.DataFrame:
    cells = results.cells
    if "search" in cells:
        cells = cells[~cells["search"].astype(bool)]
    return final_outcomes(cells)


def _non_inferiority(table, claim, name, nf, bn):
    """acc(nf) − acc(bn) per batch size, paired by seed, with the mean accuracies and LRs."""
    pair = table[table["tag"].isin([nf, bn])]
    gain = changes(pair, "test_acc", "tag", bn, by="batch_size")
    means = pair.groupby(["tag", "batch_size"])[["test_acc", "lr"]].mean()
    return per_condition(claim, name, gain[gain["tag"] == nf], "batch_size",
        detail=lambda b: f"B = {b}: " + ", ".join(f"{t} {means.loc[(t, b), 'test_acc']:.3f} at LR "
        f"{means.loc[(t, b), 'lr']:.3g}" for t in (bn, nf) if (t, b) in means.index))  # fmt: skip


def _lr_ratio(cells, batch: int):
    """log10(max stable LR NF+AGC / NF) per seed at `batch`, its resolution, its bracketed share
    and a detail line; None when either search is missing."""
    tags = [SEARCH["NF+AGC"]["tag"], SEARCH["NF"]["tag"]]
    mine = cells[cells["tag"].isin(tags) & (cells["batch_size"] == batch)]
    if set(mine["tag"]) != set(tags):
        return None
    done = mine[mine["status"] == "completed"]
    lr_max = max_stable_lr(done, by="tag")
    ok = done["final_bracketed"] == 1
    width = float(done["final_bracket_width"].max()) if ok.any() else 0.0
    text = "; ".join(f"{t}: " + ", ".join(f"{v:.3g}" for v in lr_max[t]) for t in tags)
    ratio = np.log10(lr_max[tags[0]] / lr_max[tags[1]])
    return ratio, math.sqrt(2) * width, float(ok.mean()) if len(ok) else 0.0, text


def statistics(results: Results):
    cells = results.cells
    if cells.empty:
        return []
    out = []
    acc = _accuracy(results)
    if {"BN", "NF+AGC"} <= set(acc["tag"]):
        out += _non_inferiority(acc, "NF-MATCH", "nf_vs_bn", "NF+AGC", "BN")
        bn = acc[acc["tag"] == "BN"].groupby("batch_size")["test_acc"].mean()
        out.append(CheckValue("NF-MATCH", "bn_trained", bn.min(), f"BN, per batch: {bn.to_dict()}"))
    if {"BNN+BN", "BNN+NF+AGC"} <= set(acc["tag"]):
        out += _non_inferiority(acc, "BNN-NOBN", "bnn_nf_vs_bn", "BNN+NF+AGC", "BNN+BN")
        bn = acc[acc["tag"] == "BNN+BN"].groupby("batch_size")["test_acc"].mean()
        out.append(CheckValue("BNN-NOBN", "bnn_bn_trained", bn.min(),
                              f"binary BN, per batch: {bn.to_dict()}"))  # fmt: skip
    searched = cells[cells["tag"] == SEARCH["NF"]["tag"]]["batch_size"]
    if len(searched) and "final_max_stable_lr" in cells:
        big, small = int(searched.max()), int(searched.min())
        found = _lr_ratio(cells, big)
        if found is not None:
            ratio, res, share, text = found
            out += [
                sample("AGC-LR", "log10_lr_ratio", ratio, resolution=res,
                       detail=f"B = {big}, max stable LR per seed — {text}"),
                CheckValue("AGC-LR", "bracketed", share, f"B = {big}: NF and NF+AGC searches"),
            ]  # fmt: skip
        found = _lr_ratio(cells, small) if small != big else None
        if found is not None:
            ratio, res, _, text = found
            out.append(sample("AGC-LR", "log10_lr_ratio_small", ratio, resolution=res,
                              detail=f"B = {small}, max stable LR per seed — {text}"))  # fmt: skip
    return out


def accuracy(results: Results):
    """Test accuracy of BN vs NF+AGC, real and binary, per batch size: mean and 95 % t-CI."""
    table = _accuracy(results)
    if table.empty or "tag" not in table:
        return plots.missing_figure("accuracy", ["completed accuracy cells"])
    table = table.assign(net=np.where(table["tag"].str.startswith("BNN"), "binary", "real"),
                         scheme=table["tag"].str.replace("BNN+", "", regex=False))  # fmt: skip
    return plots.by_condition(table, "test_acc", "scheme", hue="scheme", panel="net",
                              categorical=True, palette=COLORS,
                              title="Normalizer-free (scaled WS + AGC) vs BN, each at its tuned LR",
                              ylabel="test accuracy", xlabel="normalization")  # fmt: skip


def stability(results: Results):
    """Every probe of the LR searches: final training loss vs LR (● stable, × unstable;
    diverged ones on the dotted line), the threshold, each seed's max stable LR as a tick; one
    panel per batch size."""
    table = probe_table(results.records, by=["tag", "batch_size"]) if len(results.records) else None
    if table is None or table.empty:
        return plots.missing_figure("stability", [f"{PROBE}* records"])
    cells = results.cells
    threshold = float(cells["final_stability_threshold"].max())
    top = 100 * threshold
    batches = sorted(table["batch_size"].unique())
    fig, axes = plots.panels(len(batches))
    for ax, batch in zip(axes, batches):
        for tag in [t for t in ORDER if t in set(table["tag"])]:
            mine = table[(table["tag"] == tag) & (table["batch_size"] == batch)]
            if mine.empty:
                continue
            loss = mine["train_loss"].fillna(top).clip(upper=top)
            plots.outcome_points(ax, mine["lr"], loss, mine["stable"], color=COLORS[tag],
                                 sizes=(22, 22))  # fmt: skip
            sel = (cells["tag"] == tag) & (cells["batch_size"] == batch)
            lr_max = cells.loc[sel, "final_max_stable_lr"].dropna()
            ax.plot(lr_max, [1.7 * top] * len(lr_max), "|", color=COLORS[tag], ms=14, mew=2)
            ax.plot([], [], "s", color=COLORS[tag], label=tag.removesuffix(" search"))
        ax.axhline(threshold, color="gray", ls="--", lw=1, label=f"stable: loss < {threshold:.3g}")
        ax.axhline(top, color="gray", ls=":", lw=1, label=f"NaN or loss > {top:.0f}")
        ax.set(xscale="log", yscale="log", ylabel="final training loss (log)")
    plots.finish(fig, axes, title="Largest stable LR with and without AGC (bisection; ticks: "
                 "each seed's estimate)", titles=[f"batch {b}" for b in batches],
                 xlabel="learning rate (log)")  # fmt: skip
    return plots.attach_data(fig, table)


STUDY = Study(
    name="normalizer_free",
    title="Normalizer-free ResNets (scaled WS + AGC) and binary nets without BN",
    claims=("NF-MATCH", "AGC-LR", "BNN-NOBN"),
    reference=("quick", "standard"),
    profiles={
        "quick": Profile(
            QUICK,
            seeds=5,
            description="digits, ResNet-8 width 8: BN, NF+AGC and "
            "binary versions at batch 64 (tuned LRs, 15 epochs); LR searches of NF and "
            "NF+AGC at batch 256 (50 steps per probe); 5 seeds",
        ),
        "tune": tuning_profile(
            Grid(BASE, cases=_cases([64], [])),
            (1 / 16, 1 / 4, 1, 4, 16, 64, 256),
            description="the accuracy cells at LR 0.1·4^k, k = −2…4, 20 % "
            "validation split, tuning seed 1000",
        ),
        "standard": Profile(
            STANDARD,
            seeds=5,
            description="Fashion-MNIST (20 000), width 16: "
            "accuracy cells at batch 64 and 256 (5 epochs), LR searches at 256 (NF, "
            "NF+AGC, BN, no norm) and 64 (NF, NF+AGC), 200 steps per probe; 5 seeds",
            cost="≈3 h on 2 CPU cores (0.13–0.14 CPU-s per step at batch 64, 0.40 at 256, timed)",
        ),
        "paper": Profile(
            PAPER,
            seeds=5,
            description="CIFAR-10, ResNet-20: BN, NF+AGC and binary "
            "versions at batch 256 (90 epochs), LR searches at batch 1024 (NF, "
            "NF+AGC, BN, no norm; 500 steps per probe); 5 seeds",
            cost="≈4 h on one GPU (an estimate, not timed)",
            smoke={"batch_size": 16, "max_train": 16, "steps": 2, "width": 4, "depth": 8},
        ),
    },  # fmt: skip
    hooks=hooks,
    run_cell=run_cell,
    statistics=statistics,
    figures={
        "accuracy": accuracy,
        "stability": stability,
        "lr_tuning": lambda r: tuning_figure(r, keys=("tag", "batch_size")),
    },
)
