"""Does removing BN sharpen the Hessian of deep residual nets, and not of shallow ones?

Claim BN-DEPTH-HESS (Yao et al. 2020, PyHessian; ``shared/CLAIMS.md``): removing BN raises the
Hessian's top eigenvalue and trace for deep residual nets, but not necessarily for shallow ones.
Statistics, per seed, for the deep residual net in eval mode (PyHessian's protocol):
log λ_max(no BN) − log λ_max(BN) > 0 and log tr H(no BN) − log tr H(BN) > 0. The shallow and the
non-residual nets are reported alongside, and every quantity is measured in train mode as well
(batch statistics, the loss the optimizer actually sees) — the two can differ severalfold.

Protocol: small CIFAR-style ResNets (depth 6n+2) on the digits, trained briefly with SGD; at the
end, on a fixed batch of 200 training examples: top-3 eigenvalues (Lanczos), the trace (Hutch++)
and the spectral density (stochastic Lanczos quadrature). The claim is about trained nets: a seed
counts only if both nets it compares reach ≥ 50 % test accuracy (a deep net without BN that
collapsed has a flat Hessian for the wrong reason); the verdict says how many seeds were dropped.
The learning rate (0.01) is one at which the depth-20 nets without BN still train.
"""

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from normtheory.experiment import TrainCell, probe_batch
from normtheory.hooks import HessianDensity, HessianSpectrum, HessianTrace, LossAccuracy
from normtheory.report.figures import missing_figure, norm_palette
from normtheory.stats import mean_ci, verdict
from normtheory.study import Grid, Profile, Results, Study

MIN_ACC = 0.5  # a net below this test accuracy did not train
BASE = TrainCell(
    dataset="digits",
    arch="resnet",
    width=8,
    depth=8,
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    batch_size=64,
    steps=200,
)
MODES = ("eval", "train")


def hooks(cell: TrainCell):
    probe = probe_batch(cell, 200)
    out = [LossAccuracy(every=10)]
    for mode in MODES:
        kw = {"probe": probe, "mode": mode, "at_end": True}
        out += [
            HessianSpectrum(k=3, name=f"eig_{mode}", **kw),
            HessianTrace(n_hvp=40, name=f"trace_{mode}", **kw),
            HessianDensity(n_iter=40, name=f"density_{mode}", **kw),
        ]
    return out


def _end_values(results: Results, metric: str, key: str = "") -> pd.DataFrame:
    rec = results.records
    rows = rec[(rec["metric"] == metric) & (rec["key"] == key)]
    return rows.pivot_table(index=["depth", "residual", "seed"], columns="norm", values="value")


def _trained(results: Results) -> pd.DataFrame:
    """Per (depth, residual, seed) and norm: whether that net reached MIN_ACC test accuracy."""
    cells = results.cells
    ok = (cells["status"] == "completed") & (cells["final_test_acc"] >= MIN_ACC)
    return cells.assign(ok=ok).pivot_table(
        index=["depth", "residual", "seed"], columns="norm", values="ok", aggfunc="all"
    )


def _log_gap(table: pd.DataFrame, depth: int, residual: bool, trained: pd.DataFrame | None = None):
    """Per seed log(none) − log(batch) at (depth, residual); seeds where either net did not
    train are dropped when `trained` is given."""
    try:
        sub = table.xs((depth, residual), level=("depth", "residual"))
    except KeyError:
        return None
    if "none" not in sub or "batch" not in sub:
        return None
    gap = np.log(sub["none"].where(sub["none"] > 0)) - np.log(sub["batch"].where(sub["batch"] > 0))
    if trained is not None:
        ok = (
            trained.xs((depth, residual), level=("depth", "residual"))
            .all(axis=1)
            .reindex(gap.index, fill_value=False)
        )
        gap = gap[ok.astype(bool)]
    return gap


def verdicts(results: Results):
    depths = sorted(results.cells["depth"].unique())
    trained = _trained(results)
    deep, shallow = depths[-1], depths[0]
    out = []
    for metric, key, what in (("eig_eval.eig", "1", "λ_max"), ("trace_eval.trace", "", "tr H")):
        table = _end_values(results, metric, key)
        everything = _log_gap(table, deep, True)
        if everything is None:
            continue
        gap = _log_gap(table, deep, True, trained)
        dropped = len(everything) - len(gap)
        context = []
        for label, d, r in (("shallow residual", shallow, True), ("deep plain", deep, False)):
            g = _log_gap(table, d, r)
            if g is not None:
                context.append(f"{label} (depth {d}) ×{np.exp(g.mean()):.3g}")
        train_gap = _log_gap(_end_values(results, metric.replace("eval", "train"), key), deep, True)
        if train_gap is not None:
            context.append(f"train-mode deep residual ×{np.exp(train_gap.mean()):.3g}")
        detail = (
            f"{what} ratio none/BN, deep residual (depth {deep}, eval mode) ×{np.exp(gap.mean()):.3g}; "
            + "; ".join(context)
        )
        if dropped:
            detail += f"; {dropped} seed(s) dropped: a net below {MIN_ACC:.0%} test accuracy (did not train)"
        out.append(
            verdict(
                "BN-DEPTH-HESS",
                f"log {what}(no BN) − log {what}(BN), depth {deep} residual, eval mode",
                mean_ci(gap),
                "greater",
                detail=detail,
            )
        )
    return out


def _config(frame: pd.DataFrame) -> pd.Series:
    return (
        "depth " + frame["depth"].astype(str) + np.where(frame["residual"], " residual", " plain")
    )


def top_eigs(results: Results):
    rec = results.records
    rows = rec[
        rec["metric"].isin(
            ["eig_eval.eig", "eig_train.eig", "trace_eval.trace", "trace_train.trace"]
        )
        & rec["key"].isin(["1", ""])
    ]
    if rows.empty:
        return missing_figure("top eigenvalue and trace", ["eig_*.eig", "trace_*.trace"])
    rows = rows.assign(
        config=_config(rows),
        quantity=rows["metric"]
        .str.replace("eig_", "λ_max, ")
        .str.replace("trace_", "trace, ")
        .str.replace(".eig", "")
        .str.replace(".trace", ""),
    )
    quantities = sorted(rows["quantity"].unique())
    fig, axes = plt.subplots(
        1, len(quantities), figsize=(3.6 * len(quantities), 3.8), squeeze=False
    )
    configs = sorted(rows["config"].unique())
    palette = norm_palette(["batch", "none"])
    cells = results.cells
    rows = rows.assign(cell=rows["cell"] + "|" + rows["seed"].astype(str))
    ok = dict(
        zip(
            cells["cell"] + "|" + cells["seed"].astype(str),
            cells["final_test_acc"].fillna(0) >= MIN_ACC,
        )
    )
    for ax, q in zip(axes[0], quantities):
        sub = rows[rows["quantity"] == q]
        for j, norm in enumerate(("batch", "none")):
            pts = sub[sub["norm"] == norm]
            xs = [configs.index(c) + (j - 0.5) * 0.25 for c in pts["config"]]
            trained = pts["cell"].map(ok).fillna(False).to_numpy(dtype=bool)
            values = pts["value"].clip(lower=1e-6).to_numpy()
            xs = np.asarray(xs)
            ax.scatter(xs[trained], values[trained], color=palette[norm], label=norm, s=25)
            ax.scatter(
                xs[~trained],
                values[~trained],
                color=palette[norm],
                marker="x",
                s=40,
                label=f"{norm}, did not train" if (~trained).any() else None,
            )
        ax.set_yscale("log")
        ax.set_xticks(range(len(configs)), configs, rotation=30, ha="right")
        ax.set_title(q + " mode")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("value (log; one dot per seed)")
    handles = {lab: h for ax in axes[0] for h, lab in zip(*ax.get_legend_handles_labels())}
    fig.legend(
        handles.values(), handles.keys(), title="norm", loc="center left", bbox_to_anchor=(1.0, 0.5)
    )
    fig.suptitle(
        f"Hessian at the end of training on 200 examples (× = test accuracy < {MIN_ACC:.0%}: did not train)"
    )
    fig.tight_layout()
    return fig


def _smooth(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    kernel = np.exp(-0.5 * ((grid[:, None] - nodes[None, :]) / sigma) ** 2) / (
        sigma * np.sqrt(2 * np.pi)
    )
    return kernel @ weights


def densities(results: Results, mode: str = "eval"):
    rec = results.records
    nodes = rec[rec["metric"] == f"density_{mode}.node"]
    if nodes.empty:
        return missing_figure(f"spectral density ({mode} mode)", [f"density_{mode}.node"])
    weights = rec[rec["metric"] == f"density_{mode}.weight"]
    both = nodes.merge(
        weights[["cell", "seed", "key", "value"]],
        on=["cell", "seed", "key"],
        suffixes=("_node", "_weight"),
    )
    both = both.assign(config=_config(both))
    configs = sorted(both["config"].unique())
    fig, axes = plt.subplots(1, len(configs), figsize=(3.6 * len(configs), 3.4), squeeze=False)
    palette = norm_palette(["batch", "none"])
    for ax, config in zip(axes[0], configs):
        sub = both[both["config"] == config]
        lo, hi = sub["value_node"].min(), sub["value_node"].max()
        span = max(hi - lo, 1e-6)
        grid = np.linspace(lo - 0.05 * span, hi + 0.05 * span, 400)
        for norm in ("batch", "none"):
            for seed, runs in sub[sub["norm"] == norm].groupby("seed"):
                dens = _smooth(
                    runs["value_node"].to_numpy(),
                    runs["value_weight"].to_numpy(),
                    grid,
                    0.01 * span,
                )
                ax.plot(
                    grid,
                    np.maximum(dens, 1e-8),
                    color=palette[norm],
                    alpha=0.8,
                    lw=1,
                    label=norm if seed == 0 else None,
                )
        ax.set_yscale("log")
        ax.set_ylim(bottom=1e-6)
        ax.set(title=config, xlabel="eigenvalue")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("density (log)")
    axes[0][-1].legend(title="norm")
    fig.suptitle(
        f"Hessian eigenvalue density (SLQ, {mode} mode; one line per seed, Gaussian smoothing 1% of the range)"
    )
    fig.tight_layout()
    return fig


GRID = {"depth": (8, 20), "residual": (True, False), "norm": ("batch", "none")}
STUDY = Study(
    name="hessian_depth",
    title="Hessian spectrum of shallow vs deep ResNets, with and without BN",
    claims=("BN-DEPTH-HESS",),
    profiles={
        "quick": Profile(
            Grid(BASE, GRID), seeds=2, description="depth 8 vs 20, ± residual, ± BN, 2 seeds"
        ),
        "full": Profile(
            Grid(BASE, {**GRID, "depth": (8, 20, 32)}),
            seeds=4,
            description="depth 8/20/32, 4 seeds",
        ),
    },
    hooks=hooks,
    verdicts=verdicts,
    figures={
        "top_eigs": top_eigs,
        "density_eval": densities,
        "density_train": lambda r: densities(r, "train"),
    },
)
