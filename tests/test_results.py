"""`normtheory.results`: run folders, completion records, corrupt/missing folders, failed-cell
retry (the atomic writes they rely on: ``tests/test_atomic.py``)."""

import json

import pandas as pd
import pytest

from normtheory.results import ResultsError, RunDir, load, load_cells

MANIFEST = {"study": "s", "profile": "quick", "config": {"a": 1}}


def _records(n=3):
    return pd.DataFrame(
        {
            "run": "r",
            "cell": "c",
            "seed": 0,
            "step": range(n),
            "metric": "m",
            "key": "",
            "value": [0.5] * n,
        }
    )


def _summary(status="completed"):
    return {
        "cell_label": "c",
        "fields": {"norm": "batch"},
        "seed": 0,
        "status": status,
        "final": {"test_acc": 0.9},
    }


def test_cell_is_complete_only_after_its_record(tmp_path):
    run = RunDir(tmp_path / "run")
    run.open(MANIFEST)
    assert not run.is_complete("c-s0")
    run.write_cell("c-s0", _records(), _summary())
    assert run.is_complete("c-s0")
    (run.cells_dir / "orphan.parquet").write_bytes(
        _records().to_parquet()
    )  # a table without its record
    frame = load(run.path)
    assert len(frame) == 3 and frame["norm"].eq("batch").all()
    assert list(load_cells(run.path)["final_test_acc"]) == [0.9]


def test_failed_cells_are_retried(tmp_path):
    run = RunDir(tmp_path / "run")
    run.open(MANIFEST)
    run.write_cell("c-s0", pd.DataFrame(), {**_summary("failed"), "error": "boom"})
    assert not run.is_complete("c-s0")
    assert load_cells(run.path)["error"].tolist() == ["boom"]


def test_missing_corrupt_and_foreign_folders_named(tmp_path):
    with pytest.raises(ResultsError, match="no results folder"):
        load(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ResultsError, match="not a normtheory run folder"):
        load(tmp_path / "plain")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(ResultsError, match="corrupt results file .*manifest.json"):
        load(bad)
    assert (bad / "manifest.json").read_text() == "{not json"
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ResultsError, match="is a file"):
        RunDir(afile).open(MANIFEST)


def test_reopening_with_other_config_refused_and_untouched(tmp_path):
    run = RunDir(tmp_path / "run")
    run.open(MANIFEST)
    before = (run.path / "manifest.json").read_text()
    with pytest.raises(ResultsError, match="differs in: a"):
        run.open({**MANIFEST, "config": {"a": 2}})
    assert (run.path / "manifest.json").read_text() == before
    again = run.open(MANIFEST)
    assert (
        "resumed_at" in again and json.loads((run.path / "manifest.json").read_text())["resumed_at"]
    )
