"""From stored results to one value per seed: the tables every study's statistics and figures
start from, with one policy for runs that did not train.

- `final_outcomes`: the final test accuracy and error of each run under `FINAL_METRIC_POLICY`.
- `schemes`: ``norm`` naming each run's scheme, ``bnp`` for BN Preconditioning (no norm layer).
- `metric`: the records of one recorded metric (optionally its last step per run).
- `seed_table`: one value per seed (rows) and condition (columns); duplicates raise.
- `paired`: per-seed differences a − b of two conditions, ready for `normtheory.verdicts.sample`.
- `changes`: the same against one baseline for every other condition, as a long table.
- `seed_gap`: `paired` straight from a long frame (the `seed_table` in between).
- `pair_means`: the means of two conditions over the seeds that have both (for detail lines).
- `wide`: recorded metrics as columns, one row per (run, step) or other index.
- `slopes`: the least-squares slope of y on x per group (e.g. per run), optionally log–log.

The seeds are the independent samples (n in every interval): values of one seed at several
conditions are pairs, not extra samples, and pooling over conditions averages within a seed.
"""

from collections.abc import Iterable

import numpy as np
import pandas as pd

FINAL_METRIC_POLICY = (
    "Final test accuracy and error: a run that diverged (non-finite training loss) counts as "
    "accuracy 0 and error 1, since the net did not train; a run that failed (an exception, "
    "retried on the next run) is left out as missing."
)


def _names(value) -> list:
    return [value] if isinstance(value, str) or not isinstance(value, Iterable) else list(value)


def _require(frame: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{what}: missing column(s) {missing}; the frame has {list(frame.columns)}")


def final_outcomes(cells: pd.DataFrame) -> pd.DataFrame:
    """The runs of `cells` with ``test_acc`` and ``test_error`` under `FINAL_METRIC_POLICY`.

    A *diverged* run (its training loss became NaN or infinite, ``status == "diverged"``) is a
    recorded outcome: the net did not train, so test accuracy 0 and test error 1. A *failed* run
    (an exception, ``status == "failed"``; the sweep retries it on the next run) has no outcome:
    its row is left out. A completed run has test accuracy ``final_test_acc`` (NaN if it was not
    evaluated) and test error 1 − accuracy.

    Args:
        cells: one row per cell × seed (`normtheory.results.load_cells`), with ``status`` and
            ``final_test_acc``.

    Returns:
        A new frame: the rows that did not fail, with the two columns added; `cells` is unchanged.
    """
    _require(cells, ["status"], "final_outcomes")
    kept = cells[cells["status"] != "failed"]
    acc = kept.get("final_test_acc", pd.Series(np.nan, index=kept.index)).astype(float)
    acc = acc.where(kept["status"] != "diverged", 0.0)
    return kept.assign(test_acc=acc, test_error=1.0 - acc)


def schemes(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with ``norm`` naming the scheme: ``bnp`` where ``bn_precondition`` is set (a net
    without norm layers whose gradients BN Preconditioning rescales), else the norm. A frame
    without both columns is returned as it is."""
    if "bn_precondition" not in frame or "norm" not in frame:
        return frame
    bnp = frame["bn_precondition"].fillna(False).astype(bool)
    return frame.assign(norm=np.where(bnp, "bnp", frame["norm"]))


def metric(records: pd.DataFrame, name, key=None, *, last: bool = False) -> pd.DataFrame:
    """The rows of the recorded metric(s) `name`.

    Args:
        records: tidy records (`normtheory.results.load`): run, cell, seed, step, metric, key,
            value and the cell fields.
        name: a metric name (e.g. ``"outcome.train_loss"``) or several.
        key: keep only rows with this key (or any of these keys); None keeps every key.
        last: keep only the last recorded step of each (cell, seed, metric, key).

    Returns:
        The matching rows (an empty frame with the same columns when there are none).
    """
    _require(records, ["metric", "key", "cell", "seed", "step"], "metric")
    rows = records[records["metric"].isin(_names(name))]
    if key is not None:
        rows = rows[rows["key"].isin(_names(key))]
    if last and len(rows):
        groups = rows.groupby(["cell", "seed", "metric", "key"], dropna=False, sort=False)
        rows = rows[rows["step"] == groups["step"].transform("max")]
    return rows


def seed_table(frame: pd.DataFrame, value: str, columns, *, within=()) -> pd.DataFrame:
    """One `value` per seed (rows) and condition (`columns`): a pivot that refuses to average.

    Args:
        frame: one row per seed and condition (e.g. `final_outcomes` of the cells).
        value: the column to tabulate (e.g. ``"test_error"``).
        columns: the condition column(s) (e.g. ``"norm"`` or ``["norm", "batch_size"]``).
        within: further row levels after ``seed`` (e.g. ``["step"]`` for one value per seed and
            step); `paired` averages over them within each seed.

    Returns:
        Rows indexed by seed (then `within`), one column per condition; NaN where a seed lacks
        a condition.

    Raises:
        ValueError: when two rows share a seed and condition (e.g. a grid axis left out of
            `columns`): silently averaging them would count conditions as seeds.
    """
    columns, within = _names(columns), _names(within)
    index = ["seed", *within]
    _require(frame, [*index, *columns, value], "seed_table")
    dup = frame.duplicated(subset=[*index, *columns], keep=False)
    if dup.any():
        example = frame.loc[dup, [*index, *columns]].iloc[0].to_dict()
        raise ValueError(
            f"seed_table: {int(dup.sum())} rows of {value!r} share their "
            f"({', '.join(index + columns)}) with another row, e.g. {example}; one value per seed "
            "and condition is needed: add the axis that tells them apart to `columns` (or "
            "`within`), or aggregate first"
        )
    return frame.pivot(
        index=index if within else "seed",
        columns=columns if len(columns) > 1 else columns[0],
        values=value,
    )


def paired(table: pd.DataFrame, a, b, *, log: bool = False) -> pd.Series:
    """Per-seed differences a − b between two columns of a `seed_table`.

    Only rows where both conditions have a value count (the pairs). When the table has row
    levels besides ``seed`` (`seed_table`'s `within`), the differences are averaged within each
    seed: d_s = mean_j (a_sj − b_sj), one sample per seed.

    Args:
        table: from `seed_table`.
        a, b: full column keys (a tuple for several column levels).
        log: differences of natural logs, log a − log b (non-positive values dropped): for
            positive quantities compared by ratios.

    Returns:
        A Series indexed by seed, named ``"a − b"``, ready for `normtheory.verdicts.sample`.
    """
    for key in (a, b):
        if key not in table.columns:
            raise KeyError(f"paired: {key!r} is not a column of the table: {list(table.columns)}")
        if not isinstance(table[key], pd.Series):
            raise KeyError(f"paired: {key!r} selects several columns; give the full key (a tuple)")
    xa, xb = table[a].astype(float), table[b].astype(float)
    if log:
        xa, xb = np.log(xa.where(xa > 0)), np.log(xb.where(xb > 0))
    diff = (xa - xb).dropna()
    if diff.index.nlevels > 1:
        diff = diff.groupby(level="seed").mean()
    return diff.rename(f"{a} − {b}")


def changes(frame: pd.DataFrame, value: str, column: str, baseline, *, by=()) -> pd.DataFrame:
    """Per seed, `value` at every other level of `column` minus its value at `baseline`.

    Args:
        frame: one row per seed, level of `column` and group of `by`.
        value: the column compared (e.g. ``"test_acc"``).
        column: the condition column (e.g. ``"tag"``); `baseline` is one of its levels.
        by: columns within which the pairs are formed (e.g. ``["batch_size"]``).

    Returns:
        Long table with columns `by`, ``seed``, `column`, ``change``; a seed missing either
        level of a pair is left out of that pair. Empty when `baseline` is absent.
    """
    by = _names(by)
    out_columns = [*by, "seed", column, "change"]
    table = seed_table(frame, value, column, within=by)
    if baseline not in table.columns:
        return pd.DataFrame(columns=out_columns)
    diff = table.drop(columns=baseline).sub(table[baseline], axis=0)
    diff.columns.name = column
    long = diff.stack().rename("change").reset_index().dropna(subset=["change"])
    return long.reindex(columns=out_columns).reset_index(drop=True)


def means_text(
    frame: pd.DataFrame, value: str, by: str, *, fmt: str = ".3f", prefix: str = ""
) -> str:
    """The mean of `value` per level of `by` as text for a detail line, e.g. ``B=8: 0.953,
    B=32: 0.961`` (`prefix` before each level, e.g. ``"B="``)."""
    means = frame.groupby(by)[value].mean()
    return ", ".join(f"{prefix}{level}: {m:{fmt}}" for level, m in means.items())


def seed_gap(frame: pd.DataFrame, value: str, column: str, a, b, *, within=(), log=False):
    """Per-seed differences a − b of `value` between two levels of `column` of a long frame:
    ``paired(seed_table(frame, value, column, within=within), a, b, log=log)``.

    Returns:
        A Series indexed by seed (averaged over `within` inside a seed), as `paired`.
    """
    return paired(seed_table(frame, value, column, within=within), a, b, log=log)


def pair_means(table: pd.DataFrame, a, b) -> pd.Series | None:
    """The means of columns `a` and `b` of a `seed_table` over the seeds that have both; None
    when either column is absent or no seed has both."""
    if not {a, b} <= set(table.columns):
        return None
    means = table[[a, b]].dropna().mean()
    return means if means.notna().all() else None


def wide(records: pd.DataFrame, index, *, prefix: str = "", dropna: bool = True) -> pd.DataFrame:
    """Recorded metrics as columns: one row per value of `index` (e.g. ``["cell", "seed",
    "step"]``), one column per metric named without `prefix`, the mean of the rows that share
    both (a pivot; pass an `index` that tells the records of one metric apart).

    Args:
        records: tidy records (e.g. `metric` of `normtheory.results.load`).
        index: the row key column(s).
        prefix: removed from the start of each metric name (e.g. ``"orth."``).
        dropna: drop the columns (metrics) that are all NaN, as `pandas.pivot_table` does.
    """
    _require(records, [*_names(index), "metric", "value"], "wide")
    table = records.pivot_table(index=index, columns="metric", values="value", dropna=dropna)
    return table.rename(columns=lambda m: m.removeprefix(prefix))


def slopes(frame: pd.DataFrame, x: str, y: str, by, *, logx=False, logy=False, min_points=2):
    """The least-squares slope of `y` on `x` (``numpy.polyfit`` of degree 1) in each group of
    `by`, on log x and / or log y when asked (log–log: the exponent of a power law).

    Groups with fewer than `min_points` rows are left out.

    Returns:
        A Series named ``"slope"`` indexed by `by`.
    """
    by = _names(by)
    _require(frame, [*by, x, y], "slopes")
    out = {}
    for key, group in frame.groupby(by if len(by) > 1 else by[0], sort=True):
        if len(group) < max(min_points, 2):
            continue
        xs = np.log(group[x]) if logx else group[x]
        ys = np.log(group[y]) if logy else group[y]
        out[key] = np.polyfit(xs, ys, 1)[0]
    if len(by) > 1:
        index = pd.MultiIndex.from_arrays(list(zip(*out)) or [[]] * len(by), names=by)
    else:
        index = pd.Index(list(out), name=by[0])
    return pd.Series(list(out.values()), index=index, name="slope", dtype=float)
