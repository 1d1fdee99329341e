"""Equal, sufficient training with a learning rate tuned per condition on a validation split.

The protocol of the batch-size studies (``batch_size``, ``batch_group``), kept here so both
share it. Every cell trains the same number of epochs (`TrainCell.epochs`), enough for the
largest batch size to converge (`convergence_figure`: the training loss per epoch flattens).
Its learning rate is the one with the lowest mean validation error among candidates
``lr · 2^k`` (scaled with √(B/ref_batch), so the candidates follow the batch size): a
`tuning_profile` runs the same cells with `TrainCell.validation` > 0 — the model trains on the
training set minus a held-out part and is evaluated on that part, never on the test split — on
seeds from `TUNE_SEED` on, disjoint from the verdict seeds 0, 1, …. `best_lrs` reads the choice
off that run (`tuning_figure` draws it) and a study commits it as an `LrTable`, with the command
that produced it; the verdict profiles' cells then train at those rates (`Grid.adjust`).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from normtheory.analysis import final_outcomes, metric, schemes
from normtheory.experiment import scaled_lr
from normtheory.plots import by_condition
from normtheory.plots.layout import missing_figure
from normtheory.study import Grid, Profile

__all__ = [
    "TUNE_SEED",
    "LrTable",
    "best_lrs",
    "lr_table_source",
    "convergence_figure",
    "is_tuning",
    "tuning_figure",
    "tuning_profile",
]

TUNE_SEED = 1000  # tuning seeds are 1000, 1001, …: disjoint from the verdict seeds 0, 1, …
KEYS = ("norm", "batch_size")


@dataclass(frozen=True)
class LrTable:
    """The tuned learning rate of each (norm, batch size), applied to grid cells.

    Attributes:
        lrs: (norm, batch_size) -> the learning rate to train with (no further scaling).
        command: the command whose run chose them (`best_lrs`), for the record.
        keys: the cell fields the table is keyed by (default ``("norm", "batch_size")``; a
            study whose cases share a norm keys by ``("tag", "batch_size")``).

    A cell whose (norm, batch size) is not in the table is left as it is (its own ``lr`` and
    ``lr_scaling``): small test grids need no tuning.
    """

    lrs: Mapping = field(default_factory=dict)
    command: str = ""
    keys: tuple[str, ...] = KEYS

    def __call__(self, cell):
        lr = self.lrs.get(tuple(getattr(cell, k) for k in self.keys))
        return cell if lr is None else replace(cell, lr=float(lr), lr_scaling="none")


def tuning_profile(
    grid: Grid, factors, *, seeds: int = 1, validation: float = 0.2, description="", tier=""
):
    """The tuning twin of a verdict grid: the same cells (the same `Grid.keep`, no `LrTable`), with ``lr`` ×
    each of `factors` as an axis, `validation` of the training set held out for evaluation,
    and `seeds` seeds from `TUNE_SEED` on. `tier`: the scale it tunes for (that of the grid's
    verdict profile; it decides no claim itself)."""
    base = replace(grid.base, validation=validation)
    axes = {**grid.axes, "lr": tuple(grid.base.lr * f for f in factors)}
    tuned = Grid(base, axes, grid.cases, keep=grid.keep)
    return Profile(tuned, seeds, description, first_seed=TUNE_SEED, tier=tier)


def is_tuning(cells: pd.DataFrame) -> bool:
    """Whether `cells` come from a tuning run (evaluated on a validation split, not the test
    split): such runs decide no claim."""
    return "validation" in cells and bool((cells["validation"] > 0).any())


def _validation_errors(cells: pd.DataFrame) -> pd.DataFrame:
    out = final_outcomes(cells)
    lr = [scaled_lr(*r) for r in out[["lr", "lr_scaling", "batch_size", "ref_batch"]].values]
    return out.assign(trained_lr=lr, val_error=out["test_error"])


def best_lrs(cells: pd.DataFrame, keys=KEYS) -> pd.DataFrame:
    """Per (norm, batch size) — or per `keys` — of a tuning run: the learning rate (as trained,
    after scaling) with the lowest mean validation error over seeds (a diverged run counts as
    error 1; ties go to the smaller rate), that error, the number of seeds, and whether the
    choice lies at the edge of the candidates (then the range should be widened)."""
    keys = tuple(keys)
    errs = _validation_errors(cells)
    mean = errs.groupby([*keys, "trained_lr"])["val_error"].agg(["mean", "count"]).reset_index()
    rows = []
    for key, sub in mean.groupby(list(keys), sort=True):
        sub = sub.sort_values("trained_lr")
        best = sub.iloc[int(np.argmin(sub["mean"].to_numpy()))]
        edge = best["trained_lr"] in (sub["trained_lr"].min(), sub["trained_lr"].max())
        rows.append((*key, best["trained_lr"], best["mean"], int(best["count"]), edge))
    return pd.DataFrame(rows, columns=[*keys, "lr", "val_error", "n_seeds", "at_edge"])


def lr_table_source(cells: pd.DataFrame, keys=KEYS) -> str:
    """`best_lrs` of a tuning run as the Python literal a study commits in its `LrTable`:
    ``{(norm, batch_size): lr, ...}`` (or keyed by `keys`), rates to 4 significant digits, one
    entry a line."""
    keys = tuple(keys)
    best = best_lrs(cells, keys)
    lines = [
        f"        ({n!r}, {int(b)}): {float(f'{lr:.4g}')!r},"
        for n, b, lr in best[[*keys, "lr"]].values
    ]
    return "{\n" + "\n".join(lines) + "\n    }"


def tuning_figure(results, keys=KEYS) -> "Figure":  # noqa: F821
    """Validation error vs candidate learning rate, one panel per norm (per ``keys[0]``), one
    line per batch size: mean and t-CI over the tuning seeds. The x axis is the candidate
    before its batch-size scaling (the cells' ``lr_scaling``, named in the axis label; the same
    ticks for every batch size); the title lists the rates chosen, as trained. ``None`` (no
    figure) for a run that is not a tuning run: its cells trained at rates fixed in advance."""
    title = "Validation error vs learning rate (tuning run)"
    if not is_tuning(results.cells):
        return None
    keys = tuple(keys)
    best = best_lrs(results.cells, keys)
    chosen = [f"{n}@{b}: {lr:.3g}" for n, b, lr in best[[*keys, "lr"]].values]
    lines = ["; ".join(chosen[i : i + 6]) for i in range(0, len(chosen), 6)]
    return by_condition(
        _validation_errors(results.cells),
        "val_error",
        "lr",
        hue="batch_size",
        panel=keys[0],
        categorical=False,
        logx=2,
        clip=(0, 1),
        title="\n".join([title, "chosen (as trained):", *lines]),
        ylabel="validation error (fraction)",
        xlabel=_candidate_label(results.cells),
    )


_SCALING_TEXT = {"none": "", "linear": ", before × B/ref", "sqrt": ", before × √(B/ref)"}


def _candidate_label(cells: pd.DataFrame) -> str:
    """The tuning figure's x label: the candidate rate and the scaling the cells apply to it."""
    kinds = sorted(set(cells["lr_scaling"])) if "lr_scaling" in cells else ["none"]
    scaling = (
        _SCALING_TEXT[kinds[0]] if len(kinds) == 1 else f", before scaling ({', '.join(kinds)})"
    )
    return f"candidate lr{scaling}"


def convergence_figure(results) -> "Figure":  # noqa: F821
    """Training loss per epoch (the mean of the recorded minibatch losses in each epoch), one
    panel per batch size, one line per scheme (the norm, ``bnp`` for BN Preconditioning:
    `normtheory.analysis.schemes`), log scale: flat at the end when training is sufficient.
    Needs `LossAccuracy` records and the cells' ``epochs``."""
    title = "Training loss per epoch"
    rec = schemes(results.records)
    if "metric" not in rec or "epochs" not in rec or not (rec["epochs"] > 0).any():
        return missing_figure(title, ["training-loss records of cells trained by epochs"])
    loss = metric(rec, "outcome.train_loss")
    last = loss.groupby(["cell", "seed"])["step"].transform("max") + 1
    epoch = np.ceil((loss["step"] + 1) / last * loss["epochs"]).clip(lower=1)
    return by_condition(
        loss.assign(epoch=epoch, train_loss=loss["value"]),
        "train_loss",
        "epoch",
        hue="norm",
        panel="batch_size",
        categorical=False,
        log=True,
        title=title,
        ylabel="training loss (mean over the epoch)",
        xlabel="epoch",
    )
