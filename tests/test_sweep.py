"""`normtheory.sweep`: faults (raising or diverging cells, SIGKILL, corrupt or foreign files, killed
writes) are recorded or refused, never silently lost. (That every executor stores the same numbers:
``tests/test_executors.py``; the reference run is the ``fault_run`` fixture of ``conftest.py``.)"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fake_data import write_cifar

from normtheory.cli import main
from normtheory.experiment import TrainCell
from normtheory.results import load, load_cells

pytestmark = pytest.mark.usefixtures("one_thread")

STUDY = str(Path(__file__).with_name("fault_study.py"))


def _files(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("executor", ["local", "process"])
def test_failing_and_diverging_cells_recorded_sweep_goes_on(executor, tmp_path, capsys):
    out = tmp_path / "faults"
    argv = ["run", STUDY, "--profile", "faults", "--device", "cpu", "--out", str(out)]
    argv += ["--executor", executor] + (["--workers", "2"] if executor == "process" else [])
    assert main(argv) == 1
    stdout = capsys.readouterr().out
    assert "1 completed, 1 diverged, 1 failed, 0 already complete" in stdout
    assert "failed: tag=boom seed=0: RuntimeError: tag 'boom' asks this cell to fail" in stdout
    cells = load_cells(out).set_index("tag")
    assert cells.loc["boom", "status"] == "failed"
    assert "asks this cell to fail" in cells.loc["boom", "error"]
    assert cells.loc["diverge", "status"] == "diverged" and cells.loc["diverge", "diverged_at"] >= 0
    assert cells.loc["ok", "status"] == "completed"
    # Rerun: the failed cell is retried (and fails again), the others are not recomputed.
    assert main(argv) == 1
    assert "0 completed, 0 diverged, 1 failed, 2 already complete" in capsys.readouterr().out


def test_sigkill_mid_run_resumes_without_recomputing(tmp_path, capsys):
    out = tmp_path / "killed"
    argv = ["run", STUDY, "--device", "cpu", "--out", str(out), "steps=60"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "normtheory", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("cells/*.json"))) < 2:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = {p.stem: p.stat().st_mtime_ns for p in out.glob("cells/*.json")}
    assert 2 <= len(done) < 8
    assert len(load_cells(out)) == len(done)  # whatever the kill left is readable, nothing more
    assert main(argv) == 0
    assert f"{8 - len(done)} completed, 0 diverged, 0 failed, {len(done)} already complete" in (
        capsys.readouterr().out
    )
    assert {
        k: v
        for k, v in ((p.stem, p.stat().st_mtime_ns) for p in out.glob("cells/*.json"))
        if k in done
    } == done
    assert len(load_cells(out)) == 8 and set(load_cells(out).status) == {"completed"}


def test_killed_write_is_never_read_as_complete(fault_run, tmp_path, capsys):
    """A kill between the table's and the record's rename leaves a table without its record
    and the record's temp file: the cell counts as not complete and is recomputed."""
    out = tmp_path / "copy"
    shutil.copytree(fault_run.path, out)
    record = sorted(out.glob("cells/*.json"))[0]
    temp = record.with_name(f".{record.name}.x1y2.tmp")
    temp.write_bytes(record.read_bytes()[:40])  # a half-written record
    record.unlink()
    assert len(load_cells(out)) == 3
    argv = ["run", STUDY, "--device", "cpu", "--out", str(out)] + [
        f"{k}={v}" for k, v in fault_run.overrides.items()
    ]
    assert main(argv) == 0
    assert "1 completed, 0 diverged, 0 failed, 3 already complete" in capsys.readouterr().out
    assert (
        fault_run.values(out).equals(fault_run.values(fault_run.path)) and temp.exists()
    )  # nothing deleted


@pytest.mark.parametrize(
    "damage,needle",
    [
        (lambda run: _first(run, "*.parquet").write_bytes(b"not parquet"), "corrupt results file"),
        (lambda run: _first(run, "*.json").write_text("{truncated"), "corrupt results file"),
        (lambda run: _first(run, "*.json").write_text('{"a": 1}'), "not a cell record"),
        (lambda run: (run / "manifest.json").write_text("[1, 2]"), "corrupt results file"),
        (lambda run: (run / "manifest.json").write_text('{"x": 1}'), "not a normtheory manifest"),
        (lambda run: (run / "notes.txt").write_text("mine"), "foreign file"),
        (lambda run: (run / "cells" / "model.pt").write_bytes(b"\x00"), "foreign file"),
    ],
    ids=[
        "bad-parquet",
        "bad-json",
        "foreign-json",
        "manifest-list",
        "foreign-manifest",
        "top-file",
        "cells-file",
    ],
)
def test_corrupt_or_foreign_files_named_nothing_deleted(
    damage, needle, fault_run, tmp_path, capsys
):
    out = tmp_path / "copy"
    shutil.copytree(fault_run.path, out)
    damage(out)
    before = _files(out)
    argv = ["run", STUDY, "--device", "cpu", "--out", str(out)] + [
        f"{k}={v}" for k, v in fault_run.overrides.items()
    ]
    for args in (argv, ["report", str(out), "--out", str(tmp_path / "rep")]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert needle in err and str(out) in err and len(err.strip().splitlines()) == 1, err
    assert _files(out) == before


def _first(run: Path, pattern: str) -> Path:
    return sorted((run / "cells").glob(pattern))[0]


def test_an_override_some_cells_ignore_warns_naming_how_many_and_why():
    from normtheory.sweep import OverrideIgnored, _check_overrides_matter

    cells = [TrainCell(norm="batch"), TrainCell(norm="group"), TrainCell(norm="ghost_batch")]
    with pytest.warns(
        OverrideIgnored, match="groups=2 is ignored by 2 of 3 cells of s: norm 'batch'"
    ):
        _check_overrides_matter("s", cells, {"groups": "2"})
    with pytest.raises(ValueError, match="ghost_size=4 would change nothing in s: norm 'batch'"):
        _check_overrides_matter("s", cells[:2], {"ghost_size": "4"})
    from dataclasses import replace

    overridden = [replace(c, lr=0.1) for c in cells]  # as Grid.override leaves them
    _check_overrides_matter("s", overridden, {"lr": "0.1"})  # used everywhere: silent


@pytest.mark.parametrize("executor", ["local", "process"])
def test_cifar10_from_a_data_root_end_to_end(executor, tmp_path, monkeypatch, capsys):
    """A tiny CIFAR-10 in the exact pickle layout, named only by --data-root (no NORMTHEORY_DATA):
    a real cell trains on it in the driver's process or a worker's, the manifest records the
    root, and the same data under another root reuses the stored cell (where data lives is not
    part of a cell's id or of the run's config)."""
    monkeypatch.delenv("NORMTHEORY_DATA", raising=False)
    write_cifar(
        tmp_path / "data" / "cifar-10-batches-py", np.random.default_rng(0), (8,) * 5 + (6,)
    )
    out = tmp_path / "run"
    argv = ["run", STUDY, "dataset=cifar10", "lr=0.01", "steps=3", "--seeds", "1",
            "--device", "cpu", "--out", str(out), "--executor", executor]  # fmt: skip
    argv += ["--workers", "1"] if executor == "process" else []
    assert main([*argv, "--data-root", str(tmp_path / "data")]) == 0
    assert "1 completed, 0 diverged, 0 failed" in capsys.readouterr().out
    (cell,) = load_cells(out).itertuples()
    assert cell.status == "completed" and cell.steps_done == 3
    records = load(out)
    losses = records.loc[records["metric"].str.endswith("train_loss"), "value"]
    assert len(losses) > 0 and np.isfinite(losses).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data_root"] == str(tmp_path / "data")
    assert "data_root" not in json.dumps(manifest["config"])
    shutil.move(tmp_path / "data", tmp_path / "moved")
    assert main([*argv, "--data-root", str(tmp_path / "moved")]) == 0
    assert "0 completed, 0 diverged, 0 failed, 1 already complete" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["data_root"] == str(tmp_path / "moved")


def test_an_override_the_study_replaces_or_derives_is_refused_naming_why():
    from dataclasses import replace

    from normtheory.sweep import _check_overrides_matter

    tuned = [replace(TrainCell(), lr=0.0125, lr_scaling="none")]  # as a tuned-LR table sets it
    with pytest.raises(ValueError, match="lr=0.3 would change nothing in s: the study sets lr"):
        _check_overrides_matter("s", tuned, {"lr": "0.3"})
    _check_overrides_matter("s", tuned, {"lr": "0.0125"})  # what the cells train with: silent
    by_epochs = [TrainCell(dataset="digits", epochs=2, batch_size=32)]
    with pytest.raises(ValueError, match="steps = epochs × .*set epochs= instead"):
        _check_overrides_matter("s", by_epochs, {"steps": "10"})


def test_a_cells_id_hashes_only_the_fields_that_differ_from_their_defaults():
    """A field added to the cell type later, with a default that keeps the old behaviour,
    leaves every stored id as it was; any non-default value, of any field, changes it."""
    import dataclasses

    from normtheory.experiment import TrainCell
    from normtheory.sweep import cell_id

    @dataclasses.dataclass(frozen=True)
    class Later(TrainCell):  # TrainCell with one more field, at its default
        new_option: float = 0.0

    cell = TrainCell(norm="group", batch_size=8)
    assert cell_id(cell, ["norm"], 0) == cell_id(Later(norm="group", batch_size=8), ["norm"], 0)
    assert cell_id(cell, ["norm"], 0) != cell_id(Later("digits", 0, new_option=1.0, norm="group", batch_size=8), ["norm"], 0)  # fmt: skip
    assert cell_id(cell, ["norm"], 0) != cell_id(
        TrainCell(norm="group", batch_size=16), ["norm"], 0
    )
    assert cell_id(cell, ["norm"], 0) != cell_id(TrainCell(norm="group", batch_size=8, lr=0.5), ["norm"], 0)  # fmt: skip
    assert cell_id(cell, ["norm"], 0).endswith("-s0") and cell_id(cell, ["norm"], 3).endswith("-s3")
