"""The command line on the batch_size study's tiny grid: the stored table, resume, refusals, bad
input and user studies run by path. The study's own smoke and known-answer tests are in
test_batch_size.py."""

import json
import subprocess
import sys

import pytest
from study_cases import BATCH_SIZE_TINY as TINY

from normtheory.cli import main
from normtheory.hooks import LossAccuracy
from normtheory.results import load, load_cells


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    out = root / "run"
    assert (
        main(
            [
                "run",
                "batch_size",
                "--profile",
                "quick",
                "--seeds",
                "2",
                "--device",
                "cpu",
                "--out",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    return root, out


def test_stored_table_is_tidy_and_sane(tiny_run):
    _, out = tiny_run
    records, cells = load(out), load_cells(out)
    assert {"run", "cell", "seed", "step", "metric", "key", "value", "norm", "batch_size"} <= set(
        records.columns
    )
    assert (
        len(cells) == (5 * 2 + 1) * 2
    )  # batch 1: GN+WS only and set(cells.status) == {"completed"}
    assert cells.final_test_acc.between(0, 1).all()
    assert set(cells.batch_size) == {1, 2, 16} and set(cells.seed) == {0, 1}
    assert (cells.steps_done == 64 // cells.batch_size).all()  # one epoch of 64 at every size
    logged = (
        records[records.metric == LossAccuracy.TRAIN_LOSS].groupby(["cell", "seed"]).step.unique()
    )
    assert all(list(steps) == list(range(0, max(steps) + 1, 10)) for steps in logged)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["study"] == "batch_size" and manifest["config"]["seeds"] == 2
    assert (
        {"torch", "python"} <= set(manifest["versions"])
        and manifest["device"] == "cpu"
        and manifest["finished_at"]
    )


def test_rerun_skips_complete_cells(tiny_run, capsys):
    _, out = tiny_run
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    assert (
        main(["run", "batch_size", "--seeds", "2", "--device", "cpu", "--out", str(out), *TINY])
        == 0
    )
    assert "22 already complete" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == before


def test_run_stored_before_a_new_default_field_resumes(tiny_run, capsys):
    """A field added to the cell type later, with a default that keeps the old behaviour, must not
    block the resume of a run stored before it existed (its cell ids do not change either)."""
    import dataclasses
    import shutil

    from normtheory.experiment import TrainCell

    root, out = tiny_run
    old = root / "stored_before_field"
    shutil.copytree(out, old)
    manifest = json.loads((old / "manifest.json").read_text())
    cells = manifest["config"]["cells"]
    new_field = next(
        f.name
        for f in dataclasses.fields(TrainCell)
        if f.default is not dataclasses.MISSING and all(c[f.name] == f.default for c in cells)
    )
    for c in cells:
        del c[new_field]
    (old / "manifest.json").write_text(json.dumps(manifest))
    argv = ["run", "batch_size", "--seeds", "2", "--device", "cpu", "--out", str(old), *TINY]
    assert main(argv) == 0
    assert "22 already complete" in capsys.readouterr().out
    cells[0]["lr"] = 123.0  # a real difference still refuses
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert main(argv) == 2
    assert "different config (differs in: cells)" in capsys.readouterr().err


def test_different_config_into_same_folder_is_refused(tiny_run, capsys):
    _, out = tiny_run
    before = sorted(p.name for p in (out / "cells").iterdir())
    assert (
        main(
            [
                "run",
                "batch_size",
                "--seeds",
                "2",
                "--device",
                "cpu",
                "--out",
                str(out),
                *TINY[:-1],
                "groups=4",
            ]
        )
        == 2
    )
    assert "different config" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "cells").iterdir()) == before


@pytest.mark.parametrize(
    "argv,needle",
    [
        (
            ["run", "nonexistent_study"],
            "unknown study 'nonexistent_study'; known studies: batch_group, batch_size",
        ),
        (["run", "batch_size", "norm=batchy"], "unknown norm 'batchy'; known norms:"),
        (["run", "batch_size", "colour=red"], "unknown key 'colour'; valid keys:"),
        (["run", "batch_size", "batch_size=two"], "bad value 'two' for batch_size: expected int"),
        (["run", "batch_size", "batch_size=0"], "batch_size must be >= 1, got 0"),
        (["run", "batch_size", "dataset=imagenet"], "unknown dataset 'imagenet'; valid:"),
        (
            ["run", "batch_size", "--profile", "huge"],
            "unknown profile 'huge' for study batch_size; valid: quick, tune, standard, paper, "
            "full, tune_full",
        ),
        (["run", "batch_size", "--device", "tpu"], "invalid choice: 'tpu'"),
        (["run", "batch_size", "steps"], "bad override 'steps'"),
        (["report", "/nonexistent/run"], "no results folder at /nonexistent/run"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_one_line_exit_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_corrupt_results_file_named(tmp_path, tiny_run, capsys):
    import shutil

    _, out = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    victim = sorted((copy / "cells").glob("*.parquet"))[0]
    victim.write_bytes(b"not parquet")
    assert main(["report", str(copy), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert "corrupt results file" in err and victim.name in err
    assert victim.read_bytes() == b"not parquet"


def test_console_script_and_list():
    proc = subprocess.run(
        [sys.executable, "-m", "normtheory", "list"], capture_output=True, text=True, check=True
    )
    assert "batch_size" in proc.stdout and "GN-BATCH" in proc.stdout


USER_STUDY = '''
"""A user's own study in a file of their own."""
from normtheory.experiment import TrainCell
from normtheory.study import Grid, Profile, Study
from normtheory.evidence import sample

BASE = TrainCell(dataset="gaussian_mixture", arch="mlp", width=8, depth=1, steps=5, batch_size=16)
STUDY = Study(name="mine", title="mine", claims=("GN-BATCH",),
              profiles={"quick": Profile(Grid(BASE, {"norm": ("batch", "none")}), seeds=2)},
              statistics=lambda r: [sample("GN-BATCH", "bn_rise",
                                           1 - r.cells.groupby("seed").final_test_acc.mean())])
'''


def test_user_study_file_runs_by_path(tmp_path, capsys):
    path = tmp_path / "my_study.py"
    path.write_text(USER_STUDY)
    out = tmp_path / "run"
    assert main(["run", str(path), "--device", "cpu", "--out", str(out)]) == 0
    assert len(load_cells(out)) == 4
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert "A user&#x27;s own study" in (tmp_path / "rep" / "index.html").read_text()
    assert main(["run", str(tmp_path / "missing.py")]) == 2
    assert "does not exist" in capsys.readouterr().err
