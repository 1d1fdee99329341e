"""Does dropout after BN shrink pairwise correlation by q and mutual information by q²?

Claims (``CLAIMS.md``; Chen et al. 2019, the IC layer):
- IC-CORR (exact in expectation): independent dropout with keep probability q on zero-mean units
  gives corr(x̂_i, x̂_j) = q · corr(x_i, x_j). Statistic (secondary; the exact check is the
  ``exact_checks`` study's): per seed, the slope of log(ratio) on log(q) over
  q ∈ {0.9, 0.7, 0.5, 0.3} in the BN→Dropout block (averaged over the cells of a seed); the
  registry tests its equivalence to 1.
- IC-MI (exact for units with no mass at 0): I(x̂_i; x̂_j) = q² · I(x_i; x_j). Same fit; the
  registry tests its equivalence to 2.

The ratio at each q is the slope through the origin of the after-dropout values on the
before-dropout values over all pairs of units (`normtheory.measure.dropout.dropout_ratios`:
every example with 16 independent masks; MI binned with the same bins before and after, the
dropout atom in its own bin).

Protocol: a BN MLP (64 units) is trained on the digits; at the end of training the hook
`DropoutDependence` takes the pre-normalization activations z of its first layer on 1024 training
examples as the units. Three blocks are applied to them: "BN→Dropout" (z standardized over the
examples, as train-mode BN without affine: zero mean), and the two controls the claims'
preconditions predict to fail: "Dropout, no BN" (z itself, non-zero mean: the correlation factor
falls below q) and "ReLU→Dropout" (ReLU of the standardized z, an atom at 0: the MI factor falls
below q²).
"""

import numpy as np
import pandas as pd

from normtheory import plots
from normtheory.analysis import metric
from normtheory.evidence import sample
from normtheory.experiment import TrainCell, probe_batch, run_train_cell
from normtheory.hooks import DropoutDependence, LossAccuracy, every
from normtheory.results import Results
from normtheory.study import Grid, Profile, Study

# SGD with momentum 0.9, batch 32 (the `TrainCell` defaults)
BASE = TrainCell(dataset="digits", arch="mlp", norm="batch", width=64, depth=2, lr=0.1, steps=300)
KEEPS = (1.0, 0.9, 0.7, 0.5, 0.3)
N_PROBE, N_MASKS = 1024, 16
BLOCKS = ("BN→Dropout", "Dropout, no BN", "ReLU→Dropout")
RATIOS = {"corr": DropoutDependence.CORR_RATIO, "mi": DropoutDependence.MI_RATIO}
EXPECT = {
    "corr": "both controls have a non-zero mean, so both fall below q",
    "mi": "only ReLU→Dropout has an atom at 0, so only it falls below q² (slope > 2)",
}
# BN→Dropout and a control can sit on the theory line together: distinct markers keep both visible.
LINES = {
    "BN→Dropout": {"color": "tab:blue", "marker": "o", "ms": 8, "mfc": "none", "lw": 2.5},
    "Dropout, no BN": {"color": "tab:orange", "marker": "x", "ms": 6, "ls": "--"},
    "ReLU→Dropout": {"color": "tab:red", "marker": "s", "ms": 4},
}


def blocks(z):
    """The units each block feeds to dropout, from the first layer's pre-norm output z."""
    standardized = (z - z.mean(0)) / z.std(0)
    return {"BN→Dropout": standardized, "Dropout, no BN": z, "ReLU→Dropout": standardized.relu()}


def hooks(cell: TrainCell):
    return [LossAccuracy(every=every(20))]


def run_cell(cell: TrainCell, seed: int, *, hooks=(), **kw):
    """The standard run, plus `DropoutDependence` at the end with masks drawn from the run's seed
    (which `hooks(cell)` does not know)."""
    probe, _ = probe_batch(cell, N_PROBE)
    ratios = DropoutDependence(
        probe=probe, layer="fc1", keeps=KEEPS, blocks=blocks, n_masks=N_MASKS, seed=seed
    )
    return run_train_cell(cell, seed, hooks=[*hooks, ratios], **kw)


def ratio_table(results: Results) -> pd.DataFrame:
    """Tidy table: cell, seed, block, q, which (corr | mi), ratio, and the theory value."""
    rec = metric(results.records, list(RATIOS.values()))
    if rec.empty:
        return pd.DataFrame()
    block, q = rec["key"].str.rsplit("|", n=1, expand=True).T.to_numpy()
    table = rec[["cell", "seed"]].reset_index(drop=True).assign(block=block, q=q.astype(float))
    which = rec["metric"].map({v: k for k, v in RATIOS.items()}).to_numpy()
    table = table.assign(which=which, ratio=rec["value"].to_numpy())
    return table.assign(theory=np.where(which == "corr", table["q"], table["q"] ** 2))


def _of(frame: pd.DataFrame, block: str, which: str) -> pd.DataFrame:
    return frame[(frame["block"] == block) & (frame["which"] == which)]


def slopes(table: pd.DataFrame) -> pd.DataFrame:
    """Per cell, seed, block and quantity: the least-squares slope of log(ratio) on log(q), q < 1."""
    sub = table[(table["q"] < 1) & (table["ratio"] > 0)]
    fit = lambda g: np.polyfit(np.log(g["q"]), np.log(g["ratio"]), 1)[0]  # noqa: E731
    by = ["block", "which", "cell", "seed"]
    return sub.groupby(by).apply(fit, include_groups=False).rename("slope").reset_index()


def statistics(results: Results):
    table = ratio_table(results)
    if table.empty:
        return []
    fits, half, out = slopes(table), table[table["q"] == 0.5], []
    for claim, which, theory in (("IC-CORR", "corr", 0.5), ("IC-MI", "mi", 0.25)):
        main = _of(fits, BLOCKS[0], which)
        if main.empty:
            continue
        controls = "; ".join(
            f"{b}: slope {_of(fits, b, which)['slope'].mean():.3f}, "
            f"ratio at q = 0.5 {_of(half, b, which)['ratio'].mean():.3f}"
            for b in BLOCKS[1:]
        )
        detail = (
            f"BN→Dropout ratio at q = 0.5: {_of(half, BLOCKS[0], which)['ratio'].mean():.3f} "
            f"(theory {theory}); controls — {controls}. Expected: {EXPECT[which]}."
        )
        per_seed = main.groupby("seed")["slope"].mean()  # the cells of a seed are not extra seeds
        out.append(sample(claim, "slope", per_seed, detail=detail))
    return out


def ratios(results: Results):
    """Ratio after/before dropout vs q, log-log, with the theory lines q and q²."""
    table = ratio_table(results)
    if table.empty:
        return plots.missing_figure("dropout ratios", [f"{m} records" for m in RATIOS.values()])
    fig, axes = plots.panels(2)
    q = np.linspace(0.25, 1.0, 50)
    for ax, which, power in zip(axes, RATIOS, (1, 2)):
        for block in BLOCKS:
            s = plots.per_seed(_of(table, block, which), ["q"], "ratio")
            s = plots.summarize_ci(s, ["q"], "ratio", log=True)
            ax.plot(s["q"], s["mean"], label=block, **LINES[block])
            band = dict(color=LINES[block]["color"], alpha=plots.BAND_ALPHA, lw=0)
            ax.fill_between(s["q"], s["low"], s["high"], **band)
        ax.plot(q, q**power, "k--", lw=1, label="theory: q" + "²" * (power == 2))
        ax.set(xscale="log", yscale="log")
        ax.set_xticks(KEEPS[::-1], [f"{k:g}" for k in KEEPS[::-1]])
        yticks = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
        ax.set_yticks(yticks, [f"{y:g}" for y in yticks])
        ax.minorticks_off()
    widths = " and ".join(str(w) for w in sorted(results.records["width"].dropna().unique()))
    plots.finish(
        fig,
        axes,
        title=f"Pairs of {widths} units, before vs after dropout (mean, 95% CI over seeds)",
        titles=["IC-CORR: correlation", "IC-MI: mutual information (binned)"],
        xlabel="keep probability q (log)",
        ylabel="dependence after / before dropout (log)",
    )
    return plots.attach_data(fig, table)


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
