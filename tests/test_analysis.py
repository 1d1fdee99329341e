"""The final-metric policy, seed tables and pairing that every study's statistics start from,
on hand-built frames whose right answers are known."""

import numpy as np
import pandas as pd
import pytest

from normtheory.analysis import (
    FINAL_METRIC_POLICY,
    changes,
    final_outcomes,
    metric,
    pair_means,
    paired,
    seed_gap,
    seed_table,
    slopes,
    wide,
)


def _cells() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "norm": ["batch", "batch", "batch", "group"],
            "seed": [0, 1, 2, 0],
            "status": ["completed", "diverged", "failed", "completed"],
            "final_test_acc": [0.8, np.nan, np.nan, 0.6],
        }
    )


def test_diverged_counts_as_not_trained_and_failed_is_left_out():
    cells = _cells()
    before = cells.copy()
    out = final_outcomes(cells).set_index(["norm", "seed"])
    assert ("batch", 2) not in out.index  # failed: no outcome, retried on the next run
    assert out.loc[("batch", 1), "test_acc"] == 0.0  # diverged: the net did not train
    assert out.loc[("batch", 1), "test_error"] == 1.0
    assert out.loc[("batch", 0), "test_acc"] == 0.8
    assert out.loc[("batch", 0), "test_error"] == pytest.approx(0.2)
    assert out.loc[("group", 0), "test_error"] == pytest.approx(0.4)
    pd.testing.assert_frame_equal(cells, before)  # the input is not changed


def test_a_diverged_run_without_accuracy_column_still_gets_its_outcome():
    cells = pd.DataFrame({"seed": [0, 1], "status": ["diverged", "completed"]})
    out = final_outcomes(cells)
    assert list(out["test_acc"].fillna(-1)) == [0.0, -1.0]  # completed but never evaluated: NaN


def test_the_policy_sentence_names_both_cases():
    assert "diverged" in FINAL_METRIC_POLICY and "accuracy 0" in FINAL_METRIC_POLICY
    assert "failed" in FINAL_METRIC_POLICY and "left out" in FINAL_METRIC_POLICY


def test_seed_table_is_one_value_per_seed_and_condition():
    frame = final_outcomes(_cells())
    table = seed_table(frame, "test_error", "norm")
    assert list(table.index) == [0, 1] and list(table.columns) == ["batch", "group"]
    assert table.loc[1, "batch"] == 1.0 and np.isnan(table.loc[1, "group"])


def test_seed_table_refuses_duplicates_instead_of_averaging():
    """Two batch sizes of one seed left out of `columns` would be averaged by a pivot_table,
    counting conditions as seeds: the table must raise, naming the duplicate."""
    frame = pd.DataFrame(
        {"seed": [0, 0, 1], "norm": ["batch"] * 3, "batch_size": [2, 8, 2], "err": [0.1, 0.2, 0.3]}
    )
    with pytest.raises(ValueError, match=r"share their \(seed, norm\).*'seed': 0"):
        seed_table(frame, "err", "norm")
    table = seed_table(frame, "err", ["norm", "batch_size"])
    assert table.loc[0, ("batch", 8)] == 0.2


def test_paired_aligns_on_seeds_both_conditions_have():
    # a has seeds 0..4, b seeds 1..5: only 1..4 pair; values depend on the seed, so a
    # positional (misaligned) subtraction would give other numbers.
    a = pd.DataFrame({"seed": range(5), "cond": "a", "v": [10.0 * s for s in range(5)]})
    b = pd.DataFrame({"seed": range(1, 6), "cond": "b", "v": [float(s) for s in range(1, 6)]})
    table = seed_table(pd.concat([a, b]), "v", "cond")
    diff = paired(table, "a", "b")
    assert list(diff.index) == [1, 2, 3, 4]
    assert list(diff) == [9.0, 18.0, 27.0, 36.0]
    assert list(paired(table, "a", "b", log=True)) == pytest.approx([np.log(10)] * 4)


def test_paired_averages_within_a_seed_over_further_rows():
    frame = pd.DataFrame(
        {
            "seed": [0, 0, 0, 0, 1, 1],
            "step": [1, 2, 1, 2, 1, 1],
            "norm": ["none", "none", "batch", "batch", "none", "batch"],
            "v": [4.0, 8.0, 1.0, 3.0, 2.0, 1.0],
        }
    )
    diff = paired(seed_table(frame, "v", "norm", within="step"), "none", "batch")
    assert diff.to_dict() == {0: 4.0, 1: 1.0}  # seed 0: mean of 3 and 5; one sample per seed


def test_paired_names_a_missing_or_partial_key():
    table = seed_table(
        pd.DataFrame({"seed": [0, 0], "n": ["a", "b"], "b": [1, 2], "v": [1.0, 2.0]}),
        "v",
        ["n", "b"],
    )
    with pytest.raises(KeyError, match="not a column"):
        paired(table, "c", "a")
    with pytest.raises(KeyError, match="full key"):
        paired(table, "a", "b")
    assert paired(table, ("b", 2), ("a", 1)).tolist() == [1.0]


def test_metric_selects_name_key_and_last_step():
    records = pd.DataFrame(
        {
            "cell": ["c0"] * 5 + ["c1"],
            "seed": [0, 0, 0, 1, 1, 0],
            "step": [0, 10, 10, 0, 5, 3],
            "metric": ["m", "m", "m", "m", "m", "other"],
            "key": ["", "", "x", "", "", ""],
            "value": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    assert list(metric(records, "m")["value"]) == [1, 2, 3, 4, 5]
    assert list(metric(records, "m", key="")["value"]) == [1, 2, 4, 5]
    assert list(metric(records, "m", key="", last=True)["value"]) == [2.0, 5.0]
    assert list(metric(records, ["m", "other"], last=True)["value"]) == [2.0, 3.0, 5.0, 6.0]
    assert metric(records, "absent").empty


def test_changes_against_a_baseline_per_condition():
    frame = pd.DataFrame(
        {
            "seed": [0, 0, 0, 1, 1],
            "batch_size": [8, 8, 8, 8, 8],
            "tag": ["none", "both", "γ", "none", "both"],
            "acc": [0.5, 0.7, 0.4, 0.6, 0.65],
        }
    )
    out = changes(frame, "acc", "tag", "none", by="batch_size")
    assert list(out.columns) == ["batch_size", "seed", "tag", "change"]
    got = {(r.seed, r.tag): r.change for r in out.itertuples()}
    assert got == pytest.approx({(0, "both"): 0.2, (0, "γ"): -0.1, (1, "both"): 0.05})
    assert changes(frame, "acc", "tag", "absent").empty


def test_means_text_lists_the_mean_per_level():
    import pandas as pd

    from normtheory.analysis import means_text

    frame = pd.DataFrame({"b": [32, 8, 8, 32], "acc": [0.9, 0.5, 0.7, 1.0]})
    assert means_text(frame, "acc", "b", prefix="B=") == "B=8: 0.600, B=32: 0.950"
    assert means_text(frame, "acc", "b", fmt="+.1f") == "8: +0.6, 32: +0.9"


def _long() -> pd.DataFrame:
    """Seeds 0–2 at conditions a and b (seed 2 lacks b), two datasets each: a − b is 1 on
    dataset x and 3 on dataset y for seeds 0 and 1, so 2 on average."""
    rows = []
    for seed in (0, 1, 2):
        for dataset, gap in (("x", 1.0), ("y", 3.0)):
            rows.append({"seed": seed, "dataset": dataset, "tag": "a", "v": 10.0 + seed + gap})
            if seed < 2:
                rows.append({"seed": seed, "dataset": dataset, "tag": "b", "v": 10.0 + seed})
    return pd.DataFrame(rows)


def test_seed_gap_pairs_within_a_seed_and_averages_over_further_rows():
    frame = _long()
    gap = seed_gap(frame, "v", "tag", "a", "b", within="dataset")
    assert gap.to_dict() == {0: 2.0, 1: 2.0}  # seed 2 has no b: no pair
    log_gap = seed_gap(frame, "v", "tag", "a", "b", within="dataset", log=True)
    by_hand = np.mean([np.log(11 / 10), np.log(13 / 10)])  # seed 0: log(a / b) on x and y
    assert log_gap[0] == pytest.approx(by_hand, rel=1e-12)
    with pytest.raises(ValueError, match="share"):  # datasets are not seeds
        seed_gap(frame, "v", "tag", "a", "b")


def test_pair_means_use_only_the_seeds_with_both():
    table = pd.DataFrame({"a": [1.0, 2.0, 9.0], "b": [3.0, 5.0, np.nan]}, index=[0, 1, 2])
    assert pair_means(table, "a", "b").to_dict() == {"a": 1.5, "b": 4.0}
    assert pair_means(table, "a", "c") is None
    assert pair_means(table.assign(b=np.nan), "a", "b") is None


def test_wide_puts_each_metric_in_a_column_without_its_prefix():
    records = pd.DataFrame({
        "cell": ["c"] * 6, "seed": [0, 0, 0, 0, 1, 1], "step": [0, 0, 5, 5, 0, 0],
        "metric": ["orth.ratio", "orth.drift"] * 3, "value": [1.0, 0.0, 0.9, 1e-7, 1.0, 0.0],
    })  # fmt: skip
    table = wide(records, ["cell", "seed", "step"], prefix="orth.")
    assert sorted(table.columns) == ["drift", "ratio"]
    assert table.loc[("c", 0, 5), "ratio"] == 0.9 and table.loc[("c", 0, 5), "drift"] == 1e-7
    assert len(table) == 3
    with pytest.raises(KeyError, match="missing column"):
        wide(records.drop(columns="value"), ["cell"])


def test_slopes_are_least_squares_slopes_per_group_on_log_axes_when_asked():
    q = np.array([0.9, 0.7, 0.5, 0.3])
    frame = pd.concat([
        pd.DataFrame({"run": "line", "x": q, "y": 3.0 * q + 1.0}),
        pd.DataFrame({"run": "power", "x": q, "y": 0.5 * q**2}),
        pd.DataFrame({"run": "short", "x": q[:2], "y": q[:2]}),
    ])  # fmt: skip
    lin = slopes(frame, "x", "y", "run", min_points=3)
    assert list(lin.index) == ["line", "power"]  # "short" has 2 points
    assert lin["line"] == pytest.approx(3.0, rel=1e-12)
    loglog = slopes(frame, "x", "y", "run", logx=True, logy=True)
    assert loglog["power"] == pytest.approx(2.0, rel=1e-12)  # y = c x² is a line of slope 2
    noisy = pd.DataFrame({"run": "n", "x": [0.0, 1.0, 2.0, 3.0], "y": [0.0, 2.0, 1.0, 4.0]})
    assert slopes(noisy, "x", "y", "run")["n"] == pytest.approx(1.1, rel=1e-12)  # Σxy/Σx² centred
    two = slopes(frame.assign(seed=0), "x", "y", ["run", "seed"])
    assert two.index.names == ["run", "seed"] and two[("line", 0)] == pytest.approx(3.0)
    assert slopes(frame.assign(seed=0).iloc[:0], "x", "y", ["run", "seed"]).empty
