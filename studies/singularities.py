"""Do networks without batch statistics (GN, LN) drift toward elimination singularities, and
does weight standardization keep them away?

Claim WS-SINGULAR (``CLAIMS.md``; Qiao et al. 2019, "Micro-Batch Training with Batch-Channel
Normalization and Weight Standardization", Sec. 3): with GN or LN (statistics per example, not
per channel) a channel's statistics over the data are free to drift from zero mean / unit
variance, toward elimination singularities (channels that the ReLU after the norm switches off
for every example); weight standardization (zero-mean, unit-norm filters) keeps them near (0, 1),
as BN does by design. Measured per norm layer on a fixed probe batch (`Singularities`):
StatDiff = mean over channels of √(μ_c² + (σ_c − 1)²) of the norm's output over examples and
positions, and the dead-channel fraction. Registered statistics (``normtheory/claims.toml``),
paired by seed, each claimed > 0, for GN − GN+WS (``_gn``) and LN − LN+WS (``_ln``):
``statdiff_*``, StatDiff averaged over layers and the probes of training (step 0 excluded: "keeps
them away"); ``drift_*``, its change from step 0 to the end (a gap already there at
initialization is not a drift); secondary, ``dead_*``, the final dead-channel fraction (layer
mean), the paper's own measure. Check ``dead_channels``: the largest final dead-channel fraction
of a plain GN or LN run is > 0 (the singularity WS is claimed to prevent occurs at this scale).
The detail gives StatDiff at the start and end, the final dead and off fractions and test accuracy
per norm, and Spearman's ρ across runs between the final StatDiff (and off fraction) and the
final test accuracy.

StatDiff is taken on the norm's output after its affine (γ, β), i.e. on what the ReLU sees, so BN
is not pinned to 0: its StatDiff is √(β² + (|γ| − 1)²) averaged over channels, the drift of its
learnt affine alone. With 8×8 maps a channel is rarely off for a whole image: the off fraction
(the mean share of examples whose map a ReLU zeroes) is the graded version of the dead count.

Protocol: a 6-layer convnet (width 16, W → N → ReLU) on the 8×8 digits, GN with 4 groups
of 4 channels, SGD with momentum 0.9, η = 0.5, batch 32, constant learning rate; norms GN,
GN+WS, LN, LN+WS and BN. `Singularities` probes 256 fixed training examples in train mode
(batch statistics for BN) 17 times over training; `LossAccuracy` records the loss every 10 steps
and the test set every 50. ``quick``: 800 steps, 5 seeds; ``full``: 3000 steps, 8 seeds. The
high rate is what makes channels die at this scale: a search over plain GN/LN nets alone
(``bench/singularity_search.py``, CLAIMS.md) found none dead at η = 0.05 in up to 4000 steps,
nor at width 4–64, weight decay ≤ 5e-3, batch 8 or Adam ≤ 1e-2; at η = 0.5 GN and LN lose
about 13 and 15 of 96 channels within 400 steps and still reach 0.94–0.97 test accuracy
(deeper nets lose channels at η = 0.05 but train worse). Small nets on offline data cannot
reproduce the paper's ImageNet numbers: the verdict is about the direction and size of the
effect at this scale. ``standard``: Fashion-MNIST (20 000 training examples), 3125 steps (5
epochs), the test set every 250 steps, 5 seeds, the same η = 0.5.

``paper`` reproduces Qiao et al. 2019's elimination-singularity comparison (Sec. 3: the channel
statistics and dead channels of GN/LN ResNets with and without WS) on CIFAR-10: He et al.'s
ResNet-20 (random crop + flip) with GN (4 groups, as quick), GN+WS, LN, LN+WS and BN, SGD with
momentum 0.9 at the usual LR 0.1, weight decay 1e-4, batch 128, 30 epochs at constant LR (as
quick: the drift over training, not a schedule's end), the test set every epoch; 5 seeds. The LR
is the paper's, not quick's 0.5: whether channels die there is what ``dead_channels`` checks.
"""

from dataclasses import replace

import pandas as pd
from scipy.stats import spearmanr

from normtheory.analysis import final_outcomes, metric, seed_gap, wide
from normtheory.evidence import CheckValue, sample
from normtheory.experiment import PAPER_DATA, PAPER_EPOCH, STANDARD_DATA, TrainCell, probe_batch
from normtheory.hooks import LossAccuracy, Singularities, every
from normtheory.plots import (
    finish,
    missing_figure,
    norm_label,
    norm_order,
    norm_palette,
    over_steps,
    panels,
)
from normtheory.results import Results
from normtheory.study import Grid, Profile, Study

NORMS = ("group", "group+ws", "layer", "layer+ws", "batch")
PAIRS = {"gn": ("group", "group+ws"), "ln": ("layer", "layer+ws")}  # statistic suffix: pair
PROBES = 16  # probes after step 0
BASE = TrainCell(dataset="digits", arch="convnet", width=16, depth=6, groups=4, optimizer="sgd",
                 lr=0.5, momentum=0.9, batch_size=32, steps=800, eval_every=50)  # fmt: skip

# Fashion-MNIST, 5 epochs of 20 000 examples at batch 32.
STANDARD = replace(BASE, **STANDARD_DATA, steps=3125, eval_every=250)
# ResNet-20 on CIFAR-10 (crop + flip), LR 0.1, weight decay 1e-4, batch 128, 30 epochs (as
# examples: `PAPER_EPOCH`), the test set every epoch (390 steps).
PAPER = replace(BASE, **PAPER_DATA, arch="resnet", depth=20, lr=0.1, weight_decay=1e-4,
                batch_size=128, examples=30 * PAPER_EPOCH, eval_every=390)  # fmt: skip


def hooks(cell: TrainCell):
    probes = every(max(cell.effective_steps // PROBES, 1))
    return [
        LossAccuracy(every=every(10)),
        Singularities(probe=probe_batch(cell, 256), every=probes),
    ]


def per_run(results: Results) -> pd.DataFrame:
    """One row per (norm, seed), of the layer means: StatDiff averaged over training (step > 0),
    at step 0 and at the end, its change ``drift`` (end − step 0), the final dead and off
    fractions, and the final test accuracy (`normtheory.analysis.final_outcomes`)."""
    rec = metric(results.records, Singularities.METRICS)
    if rec.empty:
        return pd.DataFrame()
    table = wide(rec, ["norm", "seed", "step"])
    later = table[table.index.get_level_values("step") > 0].groupby(["norm", "seed"])
    first, last = table.groupby(["norm", "seed"]).first(), table.groupby(["norm", "seed"]).last()
    stat = Singularities.STAT_DIFF
    runs = pd.DataFrame(
        {
            "stat_diff_mean": later[stat].mean(),
            "stat_diff_start": first[stat],
            "stat_diff_final": last[stat],
            "drift": last[stat] - first[stat],
            "dead_final": last[Singularities.DEAD],
            "off_final": last[Singularities.OFF],
        }
    )
    runs["test_acc"] = final_outcomes(results.cells).set_index(["norm", "seed"])["test_acc"]
    return runs.reset_index()


def _rho(runs: pd.DataFrame, x: str) -> str:
    """Spearman's ρ between column `x` and the test accuracy across runs, in words."""
    sub = runs[[x, "test_acc"]].dropna()
    if len(sub) < 4 or sub[x].nunique() < 2:
        return "ρ n/a"
    rho, p = spearmanr(sub[x], sub["test_acc"])
    return f"ρ = {rho:+.2f} (p = {p:.2g}, n = {len(sub)})"


def statistics(results: Results):
    """WS-SINGULAR, per seed: ``statdiff_gn`` / ``statdiff_ln``, the StatDiff averaged over
    layers and training of GN − GN+WS / LN − LN+WS; ``drift_gn`` / ``drift_ln``, the same for the
    drift (end − step 0); ``dead_gn`` / ``dead_ln``, for the final dead-channel fraction; check
    ``dead_channels``, the largest final dead-channel fraction among the plain GN and LN runs."""
    runs = per_run(results)
    if runs.empty:
        return []
    cols = ["stat_diff_start", "stat_diff_final", "dead_final", "off_final", "test_acc"]
    means = runs.groupby("norm")[cols].mean()
    summary = "; ".join(
        f"{norm_label(n)}: StatDiff {r.stat_diff_start:.3f} at step 0 → {r.stat_diff_final:.3f}, "
        f"dead {r.dead_final:.3f}, off {r.off_final:.3f}, test acc {r.test_acc:.3f}"
        for n, r in means.loc[norm_order(means.index)].iterrows()
    )
    detail = (
        f"mean over seeds — {summary}. Spearman across runs: final StatDiff vs test acc "
        f"{_rho(runs, 'stat_diff_final')}; final off fraction vs test acc {_rho(runs, 'off_final')} "
        "(pooled over norms: between-norm differences and within-norm spread together)"
    )
    out = [
        sample("WS-SINGULAR", f"{stat}_{tag}", seed_gap(runs, col, "norm", *pair), detail=detail)
        for tag, pair in PAIRS.items() if set(pair) <= set(means.index)
        for stat, col in (("statdiff", "stat_diff_mean"), ("drift", "drift"), ("dead", "dead_final"))
    ]  # fmt: skip
    plain = runs[runs["norm"].isin(["group", "layer"])].dropna(subset=["dead_final"])
    if len(plain):
        worst = plain.loc[plain["dead_final"].idxmax()]
        where = f"{len(plain)} plain GN/LN runs: {norm_label(worst['norm'])}, seed {worst['seed']}"
        text = f"largest final dead-channel fraction (mean over layers) of {where}"
        out.append(
            CheckValue("WS-SINGULAR", "dead_channels", float(worst["dead_final"]), detail=text)
        )
    return out


DRIFT_PANELS = {  # metric: (panel title, y label)
    Singularities.STAT_DIFF: (
        "Distance of channel statistics from (0, 1)",
        "StatDiff √(μ² + (σ − 1)²)",
    ),
    Singularities.OFF: (
        "Channels switched off per example",
        "off fraction (examples a ReLU zeroes)",
    ),
    Singularities.DEAD: ("Dead channels (off for every example)", "dead-channel fraction"),
}


def drift(results: Results):
    """StatDiff and the off / dead fractions over training, per norm (layer mean, CI over seeds)."""
    fig = over_steps(
        results.records,
        DRIFT_PANELS,
        logy=False,
        clip=(0, None),
        title="Channel statistics of each norm's output (what its ReLU sees), mean over layers",
    )
    for ax in fig.axes:  # non-negative quantities: the axis starts at 0, even when all are 0
        ax.set_ylim(bottom=0, top=max(ax.get_ylim()[1], 0.01))
    return fig


def accuracy_relation(results: Results):
    """Final StatDiff and off fraction against final test accuracy, one point per run."""
    runs = per_run(results)
    runs = runs.dropna(subset=["test_acc"]) if len(runs) else runs
    if runs.empty:
        return missing_figure("StatDiff vs accuracy", ["singular.* records", "final_test_acc"])
    fig, axes = panels(2, sharey=True)
    xs = {"stat_diff_final": "final StatDiff", "off_final": "final off fraction"}
    colors = norm_palette(norm_order(runs["norm"].unique()))
    for ax, x in zip(axes, xs):
        for norm, color in colors.items():
            sub = runs[runs["norm"] == norm]
            ax.scatter(sub[x], sub["test_acc"], color=color, label=norm_label(norm))
        ax.set_xlabel(xs[x])
    return finish(
        fig,
        axes,
        title="Distance from (0, 1) channel statistics vs final test accuracy (one dot per run)",
        titles=[
            f"Channel statistics vs accuracy\nSpearman {_rho(runs, 'stat_diff_final')}",
            f"Switched-off channels vs accuracy\nSpearman {_rho(runs, 'off_final')}",
        ],
        ylabel="final test accuracy",
        legend_title="normalization",
    )


STUDY = Study(
    name="singularities",
    title="Elimination singularities: GN and LN with and without WS, and BN",
    claims=("WS-SINGULAR",),
    reference=("quick", "standard"),
    profiles={
        "quick": Profile(Grid(BASE, {"norm": NORMS}), 5, "5 norms, depth 6, 800 steps, 5 seeds"),
        "full": Profile(
            Grid(replace(BASE, steps=3000), {"norm": NORMS}),
            8,
            "5 norms, depth 6, 3000 steps, 8 seeds",
        ),
        "standard": Profile(
            Grid(STANDARD, {"norm": NORMS}),
            5,
            "Fashion-MNIST (20 000), 5 norms, depth 6, 5 epochs (3125 steps), 5 seeds",
            cost="≈15 min on 2 CPU cores",
        ),
        "paper": Profile(
            Grid(PAPER, {"norm": NORMS}),
            5,
            "CIFAR-10 (crop + flip), ResNet-20, 5 norms, LR 0.1, batch 128, 30 epochs, 5 seeds",
            cost="≈30 min on one H100-class GPU (estimate, not measured: 293 k ResNet-20 steps at "
            "≈6 ms)",
            smoke={"batch_size": 32, "max_train": 32, "examples": 64, "width": 4},
        ),
    },
    hooks=hooks,
    statistics=statistics,
    figures={"drift": drift, "accuracy_relation": accuracy_relation},
)
