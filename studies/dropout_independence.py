"""Does dropout after BN shrink pairwise correlation by q and mutual information by q²?

Claims (``CLAIMS.md``; Chen et al. 2019, the IC layer):
- IC-CORR (exact in expectation): independent dropout with keep probability q on zero-mean units
  gives corr(x̂_i, x̂_j) = q · corr(x_i, x_j). Statistic (secondary; the exact check is
  ``normtheory verify``'s): per seed, the slope of log(ratio) on log(q) over
  q ∈ {0.9, 0.7, 0.5, 0.3} in the BN→Dropout block (averaged over the cells of a seed); the
  registry tests its equivalence to 1.
- IC-MI (exact for units with no mass at 0): I(x̂_i; x̂_j) = q² · I(x_i; x_j). Same fit; the
  registry tests its equivalence to 2.

The ratio at each q is the slope through the origin of the after-dropout values on the
before-dropout values over all pairs of units (`normtheory.measure.information.dropout_ratios`:
every example with 16 independent masks; MI binned with the same bins before and after, the
dropout atom in its own bin).

Protocol: a BN MLP (64 units) is trained on the digits; the pre-normalization activations z of its
first layer on 1024 training examples are the units. Three blocks are applied to them:
"BN→Dropout" (z standardized over the examples, as train-mode BN without affine: zero mean),
and the two controls the claims' preconditions predict to fail: "Dropout, no BN" (z itself,
non-zero mean: the correlation factor falls below q) and "ReLU→Dropout" (ReLU of the
standardized z, an atom at 0: the MI factor falls below q²).
"""

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from normtheory.experiment import TrainCell, build_cell_model, cell_data
from normtheory.hooks import LossAccuracy, NeuronInformation
from normtheory.measure.information import dropout_ratios
from normtheory.report.figures import missing_figure, summarize_ci
from normtheory.study import Grid, Profile, Results, Study
from normtheory.train import train
from normtheory.verdicts import sample

BASE = TrainCell(
    dataset="digits",
    arch="mlp",
    norm="batch",
    width=64,
    depth=2,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    batch_size=32,
    steps=300,
)
KEEPS = (1.0, 0.9, 0.7, 0.5, 0.3)
N_PROBE, N_MASKS = 1024, 16
BLOCKS = ("BN→Dropout", "Dropout, no BN", "ReLU→Dropout")
COLORS = {"BN→Dropout": "tab:blue", "Dropout, no BN": "tab:orange", "ReLU→Dropout": "tab:red"}
# BN→Dropout and a control can sit on the theory line together: distinct markers keep both visible.
LINES = {
    "BN→Dropout": {"marker": "o", "ms": 8, "mfc": "none", "lw": 2.5},
    "Dropout, no BN": {"marker": "x", "ms": 6, "ls": "--"},
    "ReLU→Dropout": {"marker": "s", "ms": 4},
}


def blocks(z):
    """The units each block feeds to dropout, from the first layer's pre-norm output z."""
    standardized = (z - z.mean(0)) / z.std(0)
    return {"BN→Dropout": standardized, "Dropout, no BN": z, "ReLU→Dropout": standardized.relu()}


def run_cell(cell: TrainCell, seed: int, *, device="auto", hooks=(), progress=None):
    """Trains the net, then measures the dropout ratios of every block at every q."""
    train_set, test_set = cell_data(cell)
    model = build_cell_model(cell, train_set.in_shape, train_set.num_classes, seed)
    result = train(
        model, train_set, test_set, cell.train_config(seed, device), hooks, progress=progress
    )
    probe = train_set.inputs[:N_PROBE]
    z = NeuronInformation(probe=probe, layers=["fc1"], side="output").capture(model)["fc1"]
    z = z.double().cpu()
    rows = []
    for name, units in blocks(z).items():
        rows += [
            ("ic.mean_over_std", name, float((units.mean(0) / units.std(0)).abs().mean())),
            ("ic.atom", name, float((units == 0).double().mean())),
        ]
        for q in KEEPS:
            r = dropout_ratios(units, q, n_masks=N_MASKS, seed=seed)
            rows += [
                ("ic.corr_ratio", f"{name}|{q}", r.corr),
                ("ic.mi_ratio", f"{name}|{q}", r.mi),
            ]
    extra = pd.DataFrame(rows, columns=["metric", "key", "value"]).assign(step=result.steps_done)
    result.records = pd.concat([result.records, extra[result.records.columns]], ignore_index=True)
    return result


def hooks(cell: TrainCell):
    return [LossAccuracy(every=20)]


def ratio_table(results: Results) -> pd.DataFrame:
    """Tidy table: cell, seed, block, q, which (corr | mi), ratio, and the theory value."""
    rec = results.records
    rec = rec[rec["metric"].isin(["ic.corr_ratio", "ic.mi_ratio"])]
    if rec.empty:
        return pd.DataFrame()
    parts = rec["key"].str.rsplit("|", n=1, expand=True)
    table = pd.DataFrame(
        {
            "cell": rec["cell"].to_numpy(),
            "seed": rec["seed"].to_numpy(),
            "block": parts[0].to_numpy(),
            "q": parts[1].astype(float).to_numpy(),
            "which": rec["metric"].str.removeprefix("ic.").str.removesuffix("_ratio").to_numpy(),
            "ratio": rec["value"].to_numpy(),
        }
    )
    table["theory"] = np.where(table["which"] == "corr", table["q"], table["q"] ** 2)
    return table


def slopes(table: pd.DataFrame) -> pd.DataFrame:
    """Per cell, seed, block and quantity: the least-squares slope of log(ratio) on log(q), q < 1."""
    sub = table[(table["q"] < 1) & (table["ratio"] > 0)]
    return (
        sub.groupby(["block", "which", "cell", "seed"])
        .apply(lambda g: np.polyfit(np.log(g["q"]), np.log(g["ratio"]), 1)[0], include_groups=False)
        .rename("slope")
        .reset_index()
    )


def statistics(results: Results):
    table = ratio_table(results)
    if table.empty:
        return []
    fits = slopes(table)
    out = []
    for claim, which in (("IC-CORR", "corr"), ("IC-MI", "mi")):
        main = fits[(fits["block"] == "BN→Dropout") & (fits["which"] == which)]
        if main.empty:
            continue
        controls = []
        for block in BLOCKS[1:]:
            s = fits[(fits["block"] == block) & (fits["which"] == which)]["slope"]
            half = table[
                (table["block"] == block) & (table["which"] == which) & (table["q"] == 0.5)
            ]
            controls.append(
                f"{block}: slope {s.mean():.3f}, ratio at q = 0.5 {half['ratio'].mean():.3f}"
            )
        bn_half = table[(table["block"] == "BN→Dropout") & (table["which"] == which)]
        bn_half = bn_half[bn_half["q"] == 0.5]["ratio"].mean()
        expect = (
            "both controls have a non-zero mean, so both fall below q"
            if which == "corr"
            else "only ReLU→Dropout has an atom at 0, so only it falls below q² (slope > 2)"
        )
        detail = (
            f"BN→Dropout ratio at q = 0.5: {bn_half:.3f} (theory {0.5 if which == 'corr' else 0.25}); "
            "controls — " + "; ".join(controls) + f". Expected: {expect}."
        )
        per_seed = main.groupby("seed")["slope"].mean()  # the cells of a seed are not extra seeds
        out.append(sample(claim, "slope", per_seed, detail=detail))
    return out


def ratios(results: Results):
    """Ratio after/before dropout vs q, log-log, with the theory lines q and q²."""
    table = ratio_table(results)
    if table.empty:
        return missing_figure("dropout ratios", ["ic.corr_ratio / ic.mi_ratio records"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    q = np.linspace(0.25, 1.0, 50)
    for ax, which, theory, label in (
        (axes[0], "corr", q, "theory: q"),
        (axes[1], "mi", q**2, "theory: q²"),
    ):
        for block in BLOCKS:
            sub = table[(table["block"] == block) & (table["which"] == which)]
            if len(sub):
                s = summarize_ci(sub, ["q"], "ratio", log=True)
                ax.plot(s["q"], s["mean"], color=COLORS[block], label=block, **LINES[block])
                ax.fill_between(s["q"], s["low"], s["high"], color=COLORS[block], alpha=0.2, lw=0)
        ax.plot(q, theory, "k--", lw=1, label=label)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="keep probability q (log)",
            ylabel=f"{'correlation' if which == 'corr' else 'mutual information'} after / before (log)",
            title="IC-CORR: correlation"
            if which == "corr"
            else "IC-MI: mutual information (binned)",
        )
        ax.set_xticks(KEEPS[::-1], [f"{k:g}" for k in KEEPS[::-1]])
        yticks = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
        ax.set_yticks(yticks, [f"{y:g}" for y in yticks])
        ax.minorticks_off()
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    widths = " and ".join(str(w) for w in sorted(results.records["width"].dropna().unique()))
    fig.suptitle(f"Pairs of {widths} units, before vs after dropout (mean, 95% CI over seeds)")
    fig.tight_layout()
    return fig


STUDY = Study(
    name="dropout_independence",
    title="Dropout after BN scales pairwise correlation by q and mutual information by q²",
    claims=("IC-CORR", "IC-MI"),
    profiles={
        "quick": Profile(Grid(BASE), seeds=5, description="BN MLP, 5 keep probabilities, 5 seeds"),
        "full": Profile(
            Grid(BASE, {"width": (64, 128)}),
            seeds=5,
            description="BN MLP of 64 and 128 units, 5 keep probabilities, 5 seeds",
        ),
    },
    hooks=hooks,
    run_cell=run_cell,
    statistics=statistics,
    figures={"ratios": ratios},
)
