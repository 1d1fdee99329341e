"""Bad input, tried on purpose, across the CLI and the Python API.

Each case must give a one-line message naming the bad value (and what is allowed), exit code 2
on the CLI, no traceback, and leave a run folder stored beforehand byte-identical.
"""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

import normtheory.local_data
from normtheory.cli import main
from normtheory.data import load_dataset
from normtheory.experiment import TrainCell
from normtheory.hooks import CSVSink, Monitor, OrthogonalWeightNorm, TensorBoardSink
from normtheory.models import build_model
from normtheory.norms import build_norm
from normtheory.registry import load_study
from normtheory.results import ResultsError, RunDir, load
from normtheory.sweep import run_sweep
from normtheory.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread", "no_data_root")

STUDY = str(Path(__file__).with_name("fault_study.py"))
ONE = ["lr=0.01", "steps=5"]  # the stored run: one cell, two seeds


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A run folder stored before the bad input, and a plain file where a folder is expected."""
    root = tmp_path_factory.mktemp("bad")
    assert main(["run", STUDY, "--device", "cpu", "--out", str(root / "run"), *ONE]) == 0
    (root / "afile").write_text("not a folder")
    return root


@pytest.fixture
def no_data_root(monkeypatch):
    """No NORMTHEORY_DATA: a local dataset has no data root unless the test names one."""
    monkeypatch.delenv("NORMTHEORY_DATA", raising=False)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _unwritable(root: Path) -> str:
    """A folder the process cannot create a run folder in (root ignores file modes: use /sys)."""
    if os.geteuid() == 0:
        return "/sys/normtheory-run"
    locked = root / "locked"
    locked.mkdir(exist_ok=True)
    locked.chmod(0o500)
    return str(locked / "run")


RUN = ["run", STUDY, "--device", "cpu", "--out", "{run}"]

# (argv, text the one-line message must hold)
CLI_CASES = [
    (["run", "no_such_study"], "unknown study 'no_such_study'; known studies: batch_group"),
    (["run", "missing.py"], "study file 'missing.py' does not exist"),
    ([*RUN, "norm=batchy"], "unknown norm 'batchy'; known norms: batch"),
    ([*RUN, "dataset=imagenet"], "unknown dataset 'imagenet'; valid: cifar10, digits"),
    ([*RUN, "--executor", "spark"], "invalid choice: 'spark' (choose from"),
    ([*RUN, "steps"], "bad override 'steps': expected key=value"),
    ([*RUN, "=5"], "bad override '=5': expected key=value"),
    ([*RUN, "norm="], "bad override 'norm=': expected key=value"),
    ([*RUN, "colour=red"], "unknown key 'colour'; valid keys: dataset"),
    ([*RUN, "batch_size=two"], "bad value 'two' for batch_size: expected int"),
    ([*RUN, "lr=fast"], "bad value 'fast' for lr: expected float"),
    ([*RUN, "residual=maybe"], "bad value 'maybe' for residual: expected bool"),
    ([*RUN, "batch_size=0"], "batch_size must be >= 1, got 0"),
    ([*RUN, "batch_size=-4"], "batch_size must be >= 1, got -4"),
    ([*RUN, "steps=0"], "steps must be >= 1, got 0"),
    ([*RUN, "groups=0"], "groups must be >= 1, got 0"),
    ([*RUN, "lr=-0.1"], "lr must be a positive finite number, got -0.1"),
    ([*RUN, "dropout_keep=0"], "dropout_keep must be in (0, 1]"),
    ([*RUN, "max_train=8"], "max_train (8) must be at least batch_size (16)"),
    ([*RUN, "--seeds", "0"], "seeds must be an integer >= 1, got 0"),
    ([*RUN, "--seeds", "many"], "invalid int value: 'many'"),
    ([*RUN, "--profile", "huge"], "unknown profile 'huge' for study fault_study; valid: quick"),
    ([*RUN, "--device", "tpu"], "invalid choice: 'tpu'"),
    ([*RUN, "--executor", "process", "--workers", "0"], "workers must be an integer >= 1, got 0"),
    ([*RUN, "--workers", "2"], "--workers 2 needs --executor process or ray, not local"),
    ([*RUN, "--threads", "0"], "threads must be an integer >= 1, got 0"),
    ([*RUN, "--ray-address", "auto"], "ray_address 'auto' needs executor 'ray', not 'local'"),
    ([*RUN, "lr=0.5"], "holds a run with a different config (differs in: cells"),
    # Pre-flight: missing data is found before the run folder is opened (so before its config
    # is compared with the stored one) and before any cell runs.
    ([*RUN, "dataset=cifar10"], "cifar10: no data folder given; put a local copy in a folder"),
    (
        [*RUN, "dataset=mnist", "--data-root", "{root}"],
        "mnist: missing train-images-idx3-ubyte (or train-images-idx3-ubyte.gz), ",
    ),
    ([*RUN, "--data-root", "{root}/nowhere"], "data root {root}/nowhere is not a folder"),
    (
        [*RUN, "examples=400", "steps=10"],
        "steps=10 would change nothing in fault_study: steps = "
        "examples // batch_size here (examples=400, so 25 steps at batch 16); set examples= instead",
    ),
    (
        [*RUN, "ref_batch=8"],
        "ref_batch=8 would change nothing in fault_study: the learning rate "
        "is not scaled with the batch (lr_scaling=none)",
    ),
    (
        [*RUN, "ghost_size=4"],
        "ghost_size=4 would change nothing in fault_study: norm 'batch' does not take ghost_size",
    ),
    (["run", STUDY, "--out", "{root}/afile", *ONE], "results path {root}/afile is a file"),
    (["run", STUDY, "--out", "{root}/afile/run", *ONE], "cannot write results to {root}/afile/run"),
    (["run", STUDY, "--out", "{unwritable}", *ONE], "cannot write results to {unwritable}"),
    (["run", STUDY, "--out", "{root}", *ONE], "is not empty and not a normtheory run folder"),
    (["report", "{root}/nowhere"], "no results folder at {root}/nowhere"),
    (["report", "{root}/afile"], "{root}/afile is a file, not a results folder"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize("argv,needle", CLI_CASES, ids=[" ".join(a[3:] or a) for a, _ in CLI_CASES])
def test_cli_bad_input(argv, needle, stored, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a default runs/ folder would land here
    subs = {"run": str(stored / "run"), "root": str(stored), "unwritable": _unwritable(tmp_path)}
    argv = [a.format(**subs) for a in argv]
    before = _snapshot(stored)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle.format(**subs) in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _snapshot(stored) == before and not (tmp_path / "runs").exists()


def test_cli_without_ray_says_how_to_install(stored, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    before = _snapshot(stored)
    argv = ["run", STUDY, "--device", "cpu", "--out", str(stored / "run"), "--executor", "ray"]
    assert main([*argv, *ONE]) == 2
    err = capsys.readouterr().err
    assert "executor 'ray' needs Ray" in err and "pip install normtheory[ray]" in err
    assert _snapshot(stored) == before


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["run", STUDY, "--executor", "dask"], "invalid choice: 'dask'"),
        (["run", STUDY, "norm=batchy"], "unknown norm 'batchy'"),
        (["run", STUDY, "dataset=cifar10", "lr=0.01,0.02"], "cifar10: no data folder given"),
    ],
)
def test_cli_subprocess_no_traceback(argv, needle, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NORMTHEORY_DATA"}
    proc = subprocess.run(
        [sys.executable, "-m", "normtheory", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 2 and needle in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "dataset,needle,tail",
    [
        ("cifar10", "cifar10: no data folder given; ", "normtheory never downloads data."),
        ("mnist", "mnist: no data folder given; ", "normtheory never downloads data."),
        ("fashion_mnist", "fashion_mnist: not found (looked in ", "never downloads data."),
    ],
)
def test_missing_data_stops_the_sweep_before_any_cell(
    dataset, needle, tail, tmp_path, monkeypatch, capsys
):
    """Regression: a grid on a dataset whose files are absent used to open the run folder and
    store every cell × seed as failed ("45 failed cells"); now the sweep stops first, exit 2,
    with the loader's whole one-line message, and creates nothing."""
    monkeypatch.setattr(normtheory.local_data, "_SYSTEM_ROOT", tmp_path / "no-debian-copy")
    out = tmp_path / "run"
    argv = ["run", STUDY, f"dataset={dataset}", "lr=0.01,0.02,0.05", "--out", str(out)]
    assert main([*argv, "--seeds", "3", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"normtheory: error: {needle}") and err.rstrip().endswith(tail), err
    assert len(err.strip().splitlines()) == 1 and "--data-root DIR" in err
    assert not out.exists() and not any(p.name != "no-debian-copy" for p in tmp_path.iterdir())


def _mlp(norm="batch"):
    return build_model("mlp", norm=norm, in_shape=(4,), num_classes=2, width=4, depth=1)


def _data(x):
    return TensorDataset(x, torch.zeros(len(x), dtype=torch.long))


def _no_tensorboard(stored, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    return TensorBoardSink("tb")


# (call, exception type, text the one-line message must hold)
API_CASES = [
    (lambda s, mp: load_study("no_such_study"), ValueError, "unknown study 'no_such_study'"),
    (lambda s, mp: build_norm("batchy", 4), ValueError, "unknown norm 'batchy'; known norms:"),
    (
        lambda s, mp: build_norm("batch_group", 6, channels_per_group=4),
        ValueError,
        "channels_per_group must divide num_features=6, got 4",
    ),
    (lambda s, mp: load_dataset("imagenet"), ValueError, "unknown dataset 'imagenet'"),
    (lambda s, mp: load_dataset("gaussian_mixture", n_train=0), ValueError, "n_train must be"),
    (lambda s, mp: TrainCell(width="16"), TypeError, "width must be int, got '16' (str)"),
    (lambda s, mp: TrainCell(residual=1), TypeError, "residual must be bool, got 1 (int)"),
    (lambda s, mp: TrainCell(batch_size=-2), ValueError, "batch_size must be >= 1, got -2"),
    (lambda s, mp: TrainCell(dropout_keep=1.5), ValueError, "dropout_keep must be in (0, 1]"),
    (lambda s, mp: TrainConfig(batch_size=0), ValueError, "batch_size must be >= 1, got 0"),
    (
        lambda s, mp: train(_mlp(), _data(torch.zeros(0, 4)), config=TrainConfig(device="cpu")),
        ValueError,
        "train_set is empty (0 examples)",
    ),
    (
        lambda s, mp: train(
            _mlp(), _data(torch.full((8, 4), float("nan"))), config=TrainConfig(batch_size=4)
        ),
        ValueError,
        "train_set inputs hold 32 non-finite values (NaN/inf)",
    ),
    (
        lambda s, mp: Monitor(_mlp(), [OrthogonalWeightNorm(layers=["fc9"])]).start(),
        ValueError,
        "unknown or unsupported layers ['fc9']; linear/conv layers of the model: fc1, head",
    ),
    (lambda s, mp: Monitor(_mlp(), [], sinks=["csv"]), TypeError, "got 'csv'"),
    (lambda s, mp: CSVSink(s), ValueError, "is a folder; give a file name ending .csv"),
    (_no_tensorboard, ValueError, "pip install normtheory[tensorboard]"),
    (
        lambda s, mp: run_sweep(load_study(STUDY), out=s / "run", executor="spark"),
        ValueError,
        "unknown executor 'spark'; valid: local, process, ray",
    ),
    (
        lambda s, mp: run_sweep(load_study(STUDY), out=s / "run", overrides={"steps": "-1"}),
        ValueError,
        "steps must be >= 1, got -1",
    ),
    (
        lambda s, mp: run_sweep(
            dataclasses.replace(load_study(STUDY), name="in_memory", source=""),
            out=s / "run",
            executor="process",
        ),
        ValueError,
        "study 'in_memory' is neither (use executor 'local')",
    ),
    (
        lambda s, mp: RunDir(s / "afile").open({"config": {}}),
        ResultsError,
        "results path {root}/afile is a file",
    ),
    (lambda s, mp: load(s / "afile"), ResultsError, "no results folder at {root}/afile"),
]


@pytest.mark.parametrize("call,kind,needle", API_CASES, ids=[c[2][:40] for c in API_CASES])
def test_api_bad_input(call, kind, needle, stored, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _snapshot(stored)
    with pytest.raises(kind) as info:
        call(stored, monkeypatch)
    message = str(info.value)
    assert needle.format(root=stored) in message and len(message.splitlines()) == 1, message
    assert _snapshot(stored) == before and not any(tmp_path.iterdir())
