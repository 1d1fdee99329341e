"""Does removing BN sharpen the Hessian of deep residual nets, and not of shallow ones?

Claim BN-DEPTH-HESS (Yao et al. 2020, PyHessian; ``CLAIMS.md``, registered test in
``normtheory/claims.toml``): removing BN raises the Hessian's top eigenvalue and trace for deep
residual nets, but not necessarily for shallow ones. Statistics, one value per seed, for the
deepest residual net in eval mode (PyHessian's protocol): ``log_eig_gap_deep`` = log λ_max(no BN)
− log λ_max(BN) > 0 and ``log_trace_gap_deep`` = log tr H(no BN) − log tr H(BN) > 0; secondary,
``log_eig_gap_shallow``, the same for the shallowest residual net (either sign allowed). The
non-residual nets and the train-mode values (batch statistics, the loss the optimizer actually
sees — the two modes can differ severalfold) are reported alongside.

Protocol: small CIFAR-style ResNets (depth 6n+2) on the digits, trained briefly with SGD; at the
end, on a fixed batch of 200 training examples: top-3 eigenvalues (Lanczos), the trace (Hutch++)
and the spectral density (stochastic Lanczos quadrature). The claim is about trained nets: a seed
counts only if both nets it compares reach ≥ 50 % test accuracy (a deep net without BN that
collapsed has a flat Hessian for the wrong reason); check ``deep_trained`` is the fraction of
seeds kept for the deep statistics (≥ 80 % needed). The learning rate (0.01) is one at which the depth-20
nets without BN still train.
"""

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from normtheory.experiment import TrainCell, probe_batch
from normtheory.hooks import HessianDensity, HessianSpectrum, HessianTrace, LossAccuracy
from normtheory.report.figures import missing_figure, norm_palette
from normtheory.study import Grid, Profile, Results, Study
from normtheory.verdicts import CheckValue, sample

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
NAMES = {"batch": "BN", "none": "no norm"}


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


def statistics(results: Results):
    depths = sorted(results.cells["depth"].unique())
    deep, shallow = depths[-1], depths[0]
    trained = _trained(results)
    out, kept = [], []
    rows = (
        ("log_eig_gap_deep", "eig_eval.eig", "1", "λ_max", deep),
        ("log_trace_gap_deep", "trace_eval.trace", "", "tr H", deep),
        ("log_eig_gap_shallow", "eig_eval.eig", "1", "λ_max", shallow),
    )
    for name, metric, key, what, depth in rows:
        table = _end_values(results, metric, key)
        everything = _log_gap(table, depth, True)
        if everything is None:
            continue
        gap = _log_gap(table, depth, True, trained).dropna()
        if name.endswith("_deep"):
            kept.append(len(gap) / max(len(everything), 1))
        ratio = np.exp(gap.mean())
        detail = f"{what} ratio no norm/BN, ResNet depth {depth}, eval mode ×{ratio:.3g}"
        if name.endswith("_deep"):
            context = []
            plain = _log_gap(table, deep, False)
            if plain is not None:
                context.append(f"plain depth {deep} ×{np.exp(plain.mean()):.3g}")
            train_table = _end_values(results, metric.replace("eval", "train"), key)
            train_gap = _log_gap(train_table, deep, True)
            if train_gap is not None:
                context.append(f"train mode ×{np.exp(train_gap.mean()):.3g}")
            detail += "".join(f"; {c}" for c in context)
        dropped = len(everything) - len(gap)
        if dropped:
            detail += f"; {dropped} seed(s) dropped: a net below {MIN_ACC:.0%} test accuracy"
            detail += " (or a value ≤ 0)"
        out.append(sample("BN-DEPTH-HESS", name, gap, detail=detail))
    if kept:
        detail = (
            f"fraction of seeds where both depth-{deep} residual nets reach {MIN_ACC:.0%} test "
            "accuracy"
        )
        out.append(CheckValue("BN-DEPTH-HESS", "deep_trained", float(min(kept)), detail))
    return out


def _config(frame: pd.DataFrame) -> pd.Series:
    return np.where(frame["residual"], "ResNet", "plain") + ", depth " + frame["depth"].astype(str)


def _config_order(configs) -> list[str]:
    """Residual nets first, then plain, each by depth."""
    return sorted(configs, key=lambda c: (c.startswith("plain"), int(c.rsplit(" ", 1)[1])))


def top_eigs(results: Results):
    rec = results.records
    panels = {
        ("eig", "eval"): "Top eigenvalue, eval mode",
        ("eig", "train"): "Top eigenvalue, train mode",
        ("trace", "eval"): "Trace, eval mode",
        ("trace", "train"): "Trace, train mode",
    }
    metrics = [f"{q}_{m}.{q}" for q, m in panels]
    rows = rec[rec["metric"].isin(metrics) & rec["key"].isin(["1", ""])]
    if rows.empty:
        return missing_figure("top eigenvalue and trace", metrics)
    rows = rows.assign(config=_config(rows))
    configs = _config_order(rows["config"].unique())
    palette = norm_palette(["batch", "none"])
    cells = results.cells
    ok = dict(
        zip(
            zip(cells["cell"], cells["seed"]),
            (cells["status"] == "completed") & (cells["final_test_acc"].fillna(0) >= MIN_ACC),
        )
    )
    trained_all = np.array([ok.get(k, False) for k in zip(rows["cell"], rows["seed"])], dtype=bool)
    rows = rows.assign(trained=trained_all)
    fig, axes = plt.subplots(2, 2, figsize=(9.5, 7.5), sharex=True)
    for ax, ((q, mode), title) in zip(axes.flat, panels.items()):
        sub = rows[rows["metric"] == f"{q}_{mode}.{q}"]
        for j, norm in enumerate(("batch", "none")):
            pts = sub[sub["norm"] == norm]
            xs = np.array([configs.index(c) + (j - 0.5) * 0.25 for c in pts["config"]])
            values = pts["value"].clip(lower=1e-6).to_numpy()
            trained = pts["trained"].to_numpy(dtype=bool)
            ax.scatter(xs[trained], values[trained], color=palette[norm], s=25, label=NAMES[norm])
            ax.scatter(
                xs[~trained],
                values[~trained],
                color=palette[norm],
                marker="x",
                s=40,
                label=f"{NAMES[norm]}, did not train",
            )
        ax.set_yscale("log")
        ax.set_xticks(range(len(configs)), configs, rotation=30, ha="right")
        ax.set_title(title)
        ax.set_ylabel("λ_max (log)" if q == "eig" else "tr H (log)")
        ax.grid(alpha=0.3)
    handles = {
        lab: h
        for ax in axes.flat
        for h, lab in zip(*ax.get_legend_handles_labels())
        if len(h.get_offsets())
    }
    fig.legend(
        handles.values(), handles.keys(), title="one dot per seed", loc="center left",
        bbox_to_anchor=(1.0, 0.5),
    )  # fmt: skip
    fig.suptitle(
        "Hessian at the end of training, 200 examples\n"
        f"(× = test accuracy < {MIN_ACC:.0%}: did not train)"
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
    configs = _config_order(both["config"].unique())
    ncols = 2 if len(configs) == 4 else min(len(configs), 3)
    nrows = -(-len(configs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    palette = norm_palette(["batch", "none"])
    for ax in axes.flat[len(configs) :]:
        ax.set_axis_off()
    for ax, config in zip(axes.flat, configs):
        sub = both[both["config"] == config]
        lo, hi = sub["value_node"].min(), sub["value_node"].max()
        span = max(hi - lo, 1e-6)
        grid = np.linspace(lo - 0.05 * span, hi + 0.05 * span, 400)
        for norm in ("batch", "none"):
            for i, (_, runs) in enumerate(sub[sub["norm"] == norm].groupby("seed")):
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
                    alpha=0.6,
                    lw=1,
                    label=NAMES[norm] if i == 0 else None,
                )
        ax.set_yscale("log")
        ax.set_ylim(bottom=1e-6)
        ax.set(title=config, xlabel="eigenvalue", ylabel="density (log)")
        ax.grid(alpha=0.3)
    handles = {lab: h for ax in axes.flat for h, lab in zip(*ax.get_legend_handles_labels())}
    fig.legend(
        handles.values(), handles.keys(), title="one line per seed", loc="center left",
        bbox_to_anchor=(1.0, 0.5),
    )  # fmt: skip
    fig.suptitle(
        f"Hessian eigenvalue density, {mode} mode\n"
        "(stochastic Lanczos quadrature, Gaussian smoothing 1% of the range)"
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
            Grid(BASE, GRID), seeds=5, description="depth 8 vs 20, ± residual, ± BN, 5 seeds"
        ),
        "full": Profile(
            Grid(BASE, {**GRID, "depth": (8, 20, 32)}),
            seeds=5,
            description="depth 8/20/32, 5 seeds",
        ),
    },
    hooks=hooks,
    statistics=statistics,
    figures={
        "top_eigs": top_eigs,
        "density_eval": densities,
        "density_train": lambda r: densities(r, "train"),
    },
)
