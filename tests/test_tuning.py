"""`normtheory.tuning`: the tuned-LR table applied to grid cells, the tuning twin of a grid
(validation split, LR axis, disjoint seeds), the choice of the best learning rate against a
brute-force oracle, and the figures on tuning and verdict runs."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from normtheory.experiment import TrainCell, scaled_lr
from normtheory.results import Results, load_cells
from normtheory.study import Grid, Profile, Study
from normtheory.sweep import run_sweep
from normtheory.tuning import (
    TUNE_SEED,
    LrTable,
    best_lrs,
    convergence_figure,
    is_tuning,
    lr_table_source,
    tuning_figure,
    tuning_profile,
)

BASE = TrainCell(lr=0.1, lr_scaling="sqrt", ref_batch=8, max_train=64, width=4, depth=2)
TABLE = LrTable({("batch", 2): 0.03, ("group", 8): 0.4})


def test_table_sets_the_tuned_rate_unscaled_and_leaves_other_cells_alone():
    grid = Grid(BASE, {"norm": ("batch", "group"), "batch_size": (2, 8)}, adjust=TABLE)
    lrs = {(c.norm, c.batch_size): c.effective_lr for c in grid.cells()}
    assert lrs[("batch", 2)] == 0.03 and lrs[("group", 8)] == 0.4  # as tabled, no √ scaling
    assert lrs[("group", 2)] == pytest.approx(0.1 * math.sqrt(2 / 8))  # not tabled: base rule
    assert lrs[("batch", 8)] == pytest.approx(0.1)
    overridden = grid.override({"width": "8", "norm": "batch,group"})  # adjust survives overrides
    assert {(c.norm, c.batch_size, c.width): c.lr for c in overridden.cells()}[
        ("batch", 2, 8)
    ] == 0.03


def test_keep_filters_cells_before_the_table_and_survives_overrides_and_tuning():
    def keep(cell):
        return cell.batch_size > 2 or cell.norm == "group"

    grid = Grid(BASE, {"norm": ("batch", "group"), "batch_size": (2, 8)}, adjust=TABLE, keep=keep)
    assert [(c.norm, c.batch_size, c.lr) for c in grid.cells()] == [
        ("batch", 8, 0.1), ("group", 2, 0.1), ("group", 8, 0.4)
    ]  # fmt: skip
    wider = grid.override({"batch_size": "1,2,16"})
    assert [(c.norm, c.batch_size) for c in wider.cells()] == [
        ("batch", 16), ("group", 1), ("group", 2), ("group", 16)
    ]  # fmt: skip
    tune = tuning_profile(grid, (1.0, 2.0))
    assert {(c.norm, c.batch_size) for c in tune.grid.cells()} == {
        ("batch", 8), ("group", 2), ("group", 8)
    }  # fmt: skip


def test_tuning_profile_is_the_grid_with_an_lr_axis_a_validation_split_and_disjoint_seeds():
    grid = Grid(BASE, {"norm": ("batch", "group"), "batch_size": (2, 8)}, adjust=TABLE)
    prof = tuning_profile(grid, (0.5, 1.0, 2.0), seeds=3)
    cells = prof.grid.cells()
    assert len(cells) == 2 * 2 * 3 and prof.seeds == 3 and prof.first_seed == TUNE_SEED >= 100
    assert {c.validation for c in cells} == {0.2} and prof.grid.adjust is None  # untuned rates
    by = {(c.norm, c.batch_size, c.lr) for c in cells}
    assert by == set(itertools.product(("batch", "group"), (2, 8), (0.05, 0.1, 0.2)))


def _tuning_cells(errors: dict, seeds=(1000, 1001)) -> pd.DataFrame:
    """Completed tuning cells: (norm, batch_size, lr) -> validation error per seed (list)."""
    rows = []
    for (norm, b, lr), errs in errors.items():
        for seed, e in zip(seeds, errs):
            status = "diverged" if e is None else "completed"
            rows.append({"norm": norm, "batch_size": b, "lr": lr, "lr_scaling": "sqrt",
                         "ref_batch": 8, "validation": 0.2, "seed": seed, "status": status,
                         "final_test_acc": np.nan if e is None else 1 - e})  # fmt: skip
    return pd.DataFrame(rows)


def _oracle(errors: dict) -> dict:
    """Brute force: per (norm, batch) the scaled lr of the lowest mean error (None → 1)."""
    best = {}
    for (norm, b, lr), errs in sorted(errors.items()):
        mean = sum(1.0 if e is None else e for e in errs) / len(errs)
        trained = lr * math.sqrt(b / 8)
        if (norm, b) not in best or mean < best[norm, b][1]:
            best[norm, b] = (trained, mean)
    return best


def test_best_lrs_matches_a_brute_force_oracle():
    rng = np.random.default_rng(0)
    errors = {
        (n, b, lr): list(rng.uniform(0.02, 0.5, 2))
        for n in ("batch", "group") for b in (1, 8) for lr in (0.025, 0.05, 0.1, 0.2)
    }  # fmt: skip
    errors["group", 1, 0.025] = [0.01, None]  # a diverged seed counts as error 1
    errors["batch", 8, 0.05] = [0.001, 0.002]  # an interior winner
    best = best_lrs(_tuning_cells(errors)).set_index(["norm", "batch_size"])
    for key, (lr, mean) in _oracle(errors).items():
        assert best.loc[key, "lr"] == pytest.approx(lr) and best.loc[
            key, "val_error"
        ] == pytest.approx(mean)
    assert (
        best.loc[("batch", 8), "lr"] == pytest.approx(0.05)
        and not best.loc[("batch", 8), "at_edge"]
    )
    assert set(best["n_seeds"]) == {2}


def test_best_lrs_ties_go_to_the_smaller_rate_and_edges_are_flagged():
    errors = {("batch", 8, lr): [0.1, 0.1] for lr in (0.05, 0.1, 0.2)}
    (row,) = best_lrs(_tuning_cells(errors)).itertuples()
    assert row.lr == pytest.approx(0.05) and row.at_edge


def test_is_tuning_and_figures_on_both_kinds_of_run():
    tune = _tuning_cells({("batch", 8, lr): [0.1, 0.2] for lr in (0.05, 0.1)})
    verdict = tune.assign(validation=0.0)
    assert (
        is_tuning(tune)
        and not is_tuning(verdict)
        and not is_tuning(tune.drop(columns="validation"))
    )
    fig = tuning_figure(Results(pd.DataFrame(), tune, {}))
    chosen = fig._suptitle.get_text()  # batch@8 at 0.05 has the lower mean error (0.15)
    assert "chosen (as trained):\nbatch@8: 0.05" in chosen
    assert fig.axes[0].get_xlabel() == "candidate lr, before × √(B/ref)"  # the cells' scaling
    linear = tuning_figure(Results(pd.DataFrame(), tune.assign(lr_scaling="linear"), {}))
    assert linear.axes[0].get_xlabel() == "candidate lr, before × B/ref"
    assert tuning_figure(Results(pd.DataFrame(), verdict, {})) is None  # fixed rates: no figure
    assert any(
        "missing" in t.get_text()
        for ax in convergence_figure(Results(pd.DataFrame(), verdict, {})).axes
        for t in ax.texts
    )


def test_a_profile_runs_its_seeds_from_first_seed(tmp_path):
    cell = TrainCell(max_train=64, width=4, depth=2, batch_size=16, epochs=1, validation=0.25)
    study = Study("seeded", "t", (), {"quick": Profile(Grid(cell), seeds=2, first_seed=1000)})
    run_sweep(study, out=tmp_path / "run", device="cpu")
    cells = load_cells(tmp_path / "run")
    assert sorted(cells["seed"]) == [1000, 1001] and set(cells["status"]) == {"completed"}
    assert set(cells["steps_done"]) == {(64 - 16) // 16}  # 48 examples left after 25 % held out
    assert scaled_lr(0.1, "linear", 16, 32) == pytest.approx(0.05)


def test_lr_table_source_is_the_best_lrs_as_a_literal():
    errors = {(n, b, lr): [abs(lr - 0.05 * b) + 0.01] * 2 for n in ("batch", "frn") for b in (1, 2) for lr in (0.025, 0.05, 0.1)}  # fmt: skip
    table = eval(lr_table_source(_tuning_cells(errors)))  # noqa: S307 (our own literal)
    best = best_lrs(_tuning_cells(errors))
    assert table == {
        (n, b): pytest.approx(lr, rel=1e-3)
        for n, b, lr in best[["norm", "batch_size", "lr"]].values
    }
    assert table[("frn", 2)] == pytest.approx(0.1 * math.sqrt(2 / 8))
