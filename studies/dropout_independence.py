"""Inside trained nets, does the IC layer's dropout shrink pairwise correlation by q and MI by q²?

Claims (``CLAIMS.md``; Chen et al. 2019, the IC layer W → ReLU → BN → Dropout(1 − q)):
- IC-CORR (exact in expectation, for zero-mean units): corr(x̂_i, x̂_j) = q · corr(x_i, x_j).
- IC-MI (exact for units with no mass at 0): I(x̂_i; x̂_j) = q² · I(x_i; x_j).
The claims' primary test is the exact check of the ``exact_checks`` study (Gaussian units, masks
drawn by hand). This study is their secondary test, in the real layer: per seed, the slope of
log(ratio) on log(q) over q ∈ {0.9, 0.7, 0.5, 0.3}; the registry tests its equivalence to 1
(correlation) and 2 (MI).

Protocol: one MLP (2 IC layers of 64 units) is trained on the digits *per keep probability q*,
with that q in its IC layers: the claim is about the layer with keep q, and what the layer feeds
to its dropout (BN's learned β, the ReLU atom) is what training with that q made of it. When
training ends, the hook `DropoutDependence` runs the net on 1024 training examples in train mode
(BN normalizes with the probe's batch statistics, as the dropout sees it in training) and takes
the units entering the next weight layer, ``fc2``: the first IC block's output with its
``nn.Dropout`` off (its input) and on (16 masks per example drawn by that module from a seeded
generator, the run's RNG untouched). The ratio is the slope through the origin of the after
values on the before values over all pairs of units (`module_dropout_ratios`; MI binned with the
dropout atom in a bin of its own).

Those units are what the real net gives dropout: non-zero mean β (reported as mean |β|/σ) and the
ReLU atom, moved by BN from 0 to β − γμ/σ. Two more blocks of the same net, through the same
module: "β removed" (the IC output centred: the mean precondition restored) and the control
"ReLU→Dropout, no BN" (BN's input: large mean and an atom at 0, so both ratios fall below theory).

``standard``: the same IC-layer MLP (64 units) trained on Fashion-MNIST (20 000 training
examples), 1875 steps (3 epochs at batch 32), 5 seeds. ``paper`` reproduces the mechanism behind
Chen et al. 2019's IC layer (its Sec. 3 analysis of independent units; their experiments train
ResNets with IC layers on CIFAR-10/100) at the scale of real images: IC-layer MLPs of 128 units
trained on CIFAR-10 (random crop + flip), batch 128, 20 epochs, one net per q, 5 seeds. The units
stay an MLP's: in a conv net the dropout acts on every (position, channel) while the captured
units are channels pooled over space, which is not the quantity the claims are about.
"""

from dataclasses import replace

import numpy as np
import pandas as pd

from normtheory import plots
from normtheory.analysis import metric, slopes
from normtheory.evidence import sample
from normtheory.experiment import (
    PAPER_DATA,
    PAPER_EPOCH,
    STANDARD_DATA,
    TrainCell,
    probe_batch,
    run_train_cell,
)
from normtheory.hooks import DropoutDependence, LossAccuracy, every
from normtheory.results import Results
from normtheory.study import Grid, Profile, Study

# SGD with momentum 0.9, batch 32 (the `TrainCell` defaults)
BASE = TrainCell(
    dataset="digits", arch="mlp", norm="batch", placement="ic", width=64, depth=2, lr=0.1, steps=300
)
KEEPS = (0.9, 0.7, 0.5, 0.3)  # one trained net per q
# Fashion-MNIST (20 000), 3 epochs at batch 32; measured as in quick.
STANDARD = replace(BASE, **STANDARD_DATA, steps=1875)
# CIFAR-10 (crop + flip), 128 units, batch 128, 20 epochs (as examples: `PAPER_EPOCH`).
PAPER = replace(BASE, **PAPER_DATA, width=128, batch_size=128, examples=20 * PAPER_EPOCH)
N_PROBE, N_MASKS = 1024, 16
BLOCKS = ("IC: BN→Dropout", "IC, β removed", "ReLU→Dropout, no BN")
RATIOS = {"corr": DropoutDependence.CORR_RATIO, "mi": DropoutDependence.MI_RATIO}
LINES = {
    "IC: BN→Dropout": {"color": "tab:blue", "marker": "o", "ms": 8, "mfc": "none", "lw": 2.5},
    "IC, β removed": {"color": "tab:green", "marker": "x", "ms": 6, "ls": "--"},
    "ReLU→Dropout, no BN": {"color": "tab:red", "marker": "s", "ms": 4},
}


def blocks(acts):
    """The units fed to the IC layer's dropout ``drop1``: its real input and two variants."""
    ic = acts["drop1"]  # ReLU → BN output, entering fc2 through drop1
    return {BLOCKS[0]: ic, BLOCKS[1]: ic - ic.mean(0), BLOCKS[2]: acts["norm1"]}


def hooks(cell: TrainCell):
    return [LossAccuracy(every=every(20))]


def run_cell(cell: TrainCell, seed: int, *, hooks=(), **kw):
    """The standard run, plus `DropoutDependence` at the end with masks drawn from the run's seed
    (which `hooks(cell)` does not know)."""
    probe, _ = probe_batch(cell, N_PROBE)
    ratios = DropoutDependence(
        probe=probe, dropout="drop1", capture=("drop1", "norm1"), blocks=blocks,
        n_masks=N_MASKS, seed=seed,
    )  # fmt: skip
    return run_train_cell(cell, seed, hooks=[*hooks, ratios], **kw)


def ratio_table(results: Results) -> pd.DataFrame:
    """Tidy table: cell, seed, width, block, q, which (corr | mi), ratio, and the theory value."""
    rec = metric(results.records, list(RATIOS.values()))
    if rec.empty:
        return pd.DataFrame()
    block, q = rec["key"].str.rsplit("|", n=1, expand=True).T.to_numpy()
    table = rec[["cell", "seed", "width"]].reset_index(drop=True)
    table = table.assign(block=block, q=q.astype(float))
    which = rec["metric"].map({v: k for k, v in RATIOS.items()}).to_numpy()
    table = table.assign(which=which, ratio=rec["value"].to_numpy())
    return table.assign(theory=np.where(which == "corr", table["q"], table["q"] ** 2))


def _of(frame: pd.DataFrame, block: str, which: str) -> pd.DataFrame:
    return frame[(frame["block"] == block) & (frame["which"] == which)]


def log_slopes(table: pd.DataFrame) -> pd.DataFrame:
    """Per seed, width, block and quantity: the least-squares slope of log(ratio) on log(q) over
    the nets trained at each q < 1."""
    sub = table[(table["q"] < 1) & (table["ratio"] > 0)]
    by = ["block", "which", "width", "seed"]
    return slopes(sub, "q", "ratio", by, logx=True, logy=True).reset_index()


def _precondition(results: Results, name: str, block: str) -> float:
    rows = metric(results.records, name, key=block, last=True)
    return float(rows["value"].mean()) if len(rows) else float("nan")


def statistics(results: Results):
    table = ratio_table(results)
    if table.empty:
        return []
    fits, half, out = log_slopes(table), table[table["q"] == 0.5], []
    beta = _precondition(results, DropoutDependence.MEAN_OVER_STD, BLOCKS[0])
    tied = _precondition(results, DropoutDependence.TIED, BLOCKS[0])
    dead = _precondition(results, DropoutDependence.CONSTANT, BLOCKS[0])
    width = "/".join(str(w) for w in sorted(table["width"].unique()))
    for claim, which, theory in (("IC-CORR", "corr", 0.5), ("IC-MI", "mi", 0.25)):
        main = _of(fits, BLOCKS[0], which)
        if main.empty:
            continue
        parts = "; ".join(
            f"{b}: slope {_of(fits, b, which)['slope'].mean():.3f}, "
            f"ratio at q = 0.5 {_of(half, b, which)['ratio'].mean():.3f}"
            for b in BLOCKS
        )
        detail = (
            f"In-net IC layer (one net per q; theory at q = 0.5: {theory}). {parts}. "
            f"IC units: mean |β|/σ = {beta:.3f}, ReLU atom (moved by BN) holds {tied:.1%} of "
            f"each unit, {dead:.1f} of {width} units dead (left out); no BN: mean/std = "
            f"{_precondition(results, DropoutDependence.MEAN_OVER_STD, BLOCKS[2]):.2f}, "
            f"zeros {_precondition(results, DropoutDependence.ATOM, BLOCKS[2]):.1%}."
        )
        per_seed = main.groupby("seed")["slope"].mean()  # the widths of a seed are not extra seeds
        out.append(sample(claim, "slope", per_seed, detail=detail))
    return out


def ratios(results: Results):
    """Ratio after/before dropout vs q in nets trained at that q, log-log, with theory q and q²."""
    table = ratio_table(results)
    if table.empty:
        return plots.missing_figure("dropout ratios", [f"{m} records" for m in RATIOS.values()])
    q, keeps = np.linspace(0.25, 1.0, 50), sorted(table["q"].unique())

    def theory(ax, which, rows):
        power = {"corr": 1, "mi": 2}[which]
        label = "theory: q" + "²" * (power == 2)
        ax.plot(q, q**power, "k--" if power == 1 else "k:", lw=1.2, label=label)
        ax.set(xscale="log", yscale="log")
        ax.set_xticks(keeps, [f"{k:g}" for k in keeps])
        yticks = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
        ax.set_yticks(yticks, [f"{y:g}" for y in yticks])
        ax.minorticks_off()

    widths = " and ".join(str(w) for w in sorted(table["width"].dropna().unique()))
    fig = plots.panel_curves(
        table,
        "q",
        "ratio",
        panel="which",
        order=RATIOS,
        hue="block",
        styles=LINES,
        log=True,
        decorate=theory,
        title=f"IC layer of {widths} units, one net trained per q: units entering the next "
        "layer, dropout on / off (mean, 95% CI over seeds)",
        titles=["IC-CORR: correlation", "IC-MI: mutual information (binned)"],
        xlabel="keep probability q of the trained net (log)",
        ylabel="dependence after / before dropout (log)",
    )
    return plots.attach_data(fig, table)


STUDY = Study(
    name="dropout_independence",
    title="In trained IC layers, dropout scales pairwise correlation by q and MI by q²",
    claims=("IC-CORR", "IC-MI"),
    profiles={
        "quick": Profile(
            Grid(BASE, {"dropout_keep": KEEPS}),
            seeds=5,
            description="IC-layer MLP, one net per keep probability (4), 5 seeds",
        ),
        "standard": Profile(
            Grid(STANDARD, {"dropout_keep": KEEPS}),
            seeds=5,
            description="Fashion-MNIST (20 000), IC-layer MLP, one net per keep probability (4), "
            "1875 steps, 5 seeds",
            cost="≈3 min on 2 CPU cores",
        ),
        "paper": Profile(
            Grid(PAPER, {"dropout_keep": KEEPS}),
            seeds=5,
            description="CIFAR-10 (crop + flip), IC-layer MLP of 128 units, one net per keep "
            "probability (4), batch 128, 20 epochs, 5 seeds",
            cost="≈10 min on one H100-class GPU (estimate, not measured: 156 k MLP steps at "
            "≈2 ms, plus ≈5 s of end-of-training ratios per net on the CPU)",
            smoke={"max_train": 256, "examples": 256},
        ),
        "full": Profile(
            Grid(BASE, {"dropout_keep": KEEPS, "width": (64, 128)}),
            seeds=5,
            description="IC-layer MLP of 64 and 128 units, one net per keep probability, 5 seeds",
        ),
    },
    hooks=hooks,
    run_cell=run_cell,
    statistics=statistics,
    figures={"ratios": ratios},
)
