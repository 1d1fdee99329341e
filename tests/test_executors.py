"""`normtheory.executors`: every executor stores the same numbers, bit for bit (the local run of
the ``fault_run`` fixture is the oracle); `run_job` turns a raising cell into a failed outcome
naming the error and where it was raised, runs with the job's torch threads and puts them back;
a worker that dies is a failed outcome, not a hung or crashed sweep; a worker whose driver is
killed stops instead of finishing its cell for nobody; bad settings are refused."""

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from normtheory.executors import EXECUTORS, Job, Outcome, check_executor, execute, run_job
from normtheory.experiment import TrainCell, run_train_cell
from normtheory.hooks import LossAccuracy
from normtheory.registry import load_study
from normtheory.results import load_cells
from normtheory.study import Grid, Profile, Study
from normtheory.sweep import run_sweep

pytestmark = pytest.mark.usefixtures("one_thread")

CELL = TrainCell(
    dataset="gaussian_mixture", arch="mlp", norm="batch", width=4, depth=1, steps=3, batch_size=16
)


def _job(cell=CELL, seed=0, threads=1, study="in_memory", cell_id="c-s0") -> Job:
    return Job(study, pickle.dumps(cell), seed, "cpu", threads, cell_id, "c")


def _study(run_cell) -> Study:
    return Study(
        name="in_memory", title="t", claims=(), profiles={"quick": Profile(Grid(CELL))},
        hooks=lambda cell: [LossAccuracy(every=1)], run_cell=run_cell,
    )  # fmt: skip


def _same_ordered(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return a.reset_index(drop=True).equals(b.reset_index(drop=True))


def test_run_job_returns_what_the_cell_gives():
    outcome = run_job(_job(seed=2), study=_study(run_train_cell))
    ref = run_train_cell(CELL, 2, device="cpu", hooks=[LossAccuracy(every=1)])
    assert outcome.status == ref.status == "completed" and outcome.error == ""
    assert _same_ordered(outcome.records, ref.records)
    assert outcome.info["final"] == ref.final and outcome.info["steps_done"] == ref.steps_done
    assert outcome.info["diverged_at"] is None and outcome.info["wall_time"] > 0


def test_a_raising_cell_is_a_failed_outcome_naming_error_and_place():
    def boom(cell, seed, **kw):
        raise RuntimeError("first line\nsecond line")

    outcome = run_job(_job(), study=_study(boom))
    assert outcome.status == "failed" and outcome.records.empty
    assert outcome.error == "RuntimeError: first line"  # one line
    assert outcome.info["error_at"] == f"{__file__}:{boom.__code__.co_firstlineno + 1}"


def test_run_job_runs_with_the_jobs_threads_and_restores_them():
    seen = []

    def spy(cell, seed, **kw):
        seen.append(torch.get_num_threads())
        return SimpleNamespace(
            status="completed", records=pd.DataFrame(), diverged_at=None, steps_done=0,
            final={}, wall_time=0.0,
        )  # fmt: skip

    before = torch.get_num_threads()
    run_job(_job(threads=2), study=_study(spy))
    assert seen == [2] and torch.get_num_threads() == before
    run_job(_job(threads=2), study=_study(lambda *a, **k: 1 / 0))  # restored after a failure too
    assert torch.get_num_threads() == before


def test_local_execute_yields_each_job_with_its_outcome_in_order():
    jobs = [_job(seed=s, cell_id=f"c-s{s}") for s in range(3)]
    got = list(execute(jobs, "local", study=_study(lambda cell, seed, **kw: 1 / 0)))
    assert [j.cell_id for j, _ in got] == ["c-s0", "c-s1", "c-s2"]
    assert all(o.status == "failed" and "ZeroDivisionError" in o.error for _, o in got)


def test_process_executor_gives_identical_values(fault_run, tmp_path):
    out = tmp_path / "process"
    summary = run_sweep(
        load_study(fault_run.study), device="cpu", out=out, overrides=fault_run.overrides,
        executor="process", workers=2,
    )  # fmt: skip
    assert (summary.completed, summary.failed) == (4, 0)
    assert fault_run.values(out).equals(fault_run.values(fault_run.path))  # bit-identical
    cells = load_cells(out).sort_values(["cell", "seed"]).reset_index(drop=True)
    ref = load_cells(fault_run.path).sort_values(["cell", "seed"]).reset_index(drop=True)
    assert cells.final_test_loss.tolist() == ref.final_test_loss.tolist()


def test_ray_executor_gives_identical_values(fault_run, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is optional (pip install normtheory[ray])")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "ray"
        summary = run_sweep(
            load_study(fault_run.study), device="cpu", out=out, overrides=fault_run.overrides,
            executor="ray", workers=2,
        )  # fmt: skip
    finally:
        ray.shutdown()
    assert (summary.completed, summary.failed) == (4, 0)
    assert fault_run.values(out).equals(fault_run.values(fault_run.path))


DYING_STUDY = '''
"""A study whose cell kills its worker process (as the kernel's OOM killer would)."""
import os
from normtheory.experiment import TrainCell
from normtheory.study import Grid, Profile, Study

def run_cell(cell, seed, **kw):
    os._exit(9)

STUDY = Study(name="dying", title="t", claims=(),
              profiles={"quick": Profile(Grid(TrainCell()))}, run_cell=run_cell)
'''


def test_a_dead_worker_is_a_failed_outcome(tmp_path):
    path = tmp_path / "dying.py"
    path.write_text(DYING_STUDY)
    ((job, outcome),) = execute([_job(study=str(path))], "process", workers=1)
    assert outcome.status == "failed" and outcome.error.startswith("worker lost: ")
    assert "BrokenProcessPool" in outcome.error and len(outcome.error.splitlines()) == 1


SLEEPING_STUDY = """
import os, time
from normtheory.experiment import TrainCell
from normtheory.study import Grid, Profile, Study

def run_cell(cell, seed, **kw):
    with open(os.environ["NT_WORKER_PID"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(300)

STUDY = Study(name="sleeping", title="t", claims=(),
              profiles={"quick": Profile(Grid(TrainCell()))}, run_cell=run_cell)
"""
DRIVER = """
import pickle, sys
from normtheory.executors import Job, execute
from normtheory.experiment import TrainCell
for _ in execute([Job(sys.argv[1], pickle.dumps(TrainCell()), 0, "cpu", 1, "c", "c")], "process"):
    pass
"""


def _running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (a dead child its parent has not reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def test_a_killed_driver_takes_its_pool_workers_with_it(tmp_path):
    """SIGKILL runs no clean-up in the driver; its worker, mid-cell, must not run on for nobody."""
    (tmp_path / "sleeping.py").write_text(SLEEPING_STUDY)
    pid_file = tmp_path / "worker.pid"
    env = {**os.environ, "NT_WORKER_PID": str(pid_file)}
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path / "sleeping.py")], env=env
    )
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            assert driver.poll() is None, "the driver ended before its worker started the cell"
            time.sleep(0.1)
        worker = int(pid_file.read_text())
        assert _running(worker)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 30
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        alive = _running(worker)
        if alive:
            os.kill(worker, signal.SIGKILL)
        assert not alive, "the worker outlived its driver by 30 s (its cell sleeps 300 s)"
    finally:
        if driver.poll() is None:
            driver.kill()


@pytest.mark.parametrize(
    "args,needle",
    [
        (("spark", 1, 1, None), "unknown executor 'spark'; valid: local, process, ray"),
        (("process", 0, 1, None), "workers must be an integer >= 1, got 0"),
        (("local", 1, 0, None), "threads must be an integer >= 1, got 0"),
        (("process", 1, 1, "auto"), "ray_address 'auto' needs executor 'ray', not 'process'"),
    ],
)
def test_bad_settings_are_refused(args, needle):
    with pytest.raises(ValueError) as info:
        check_executor(*args)
    assert needle in str(info.value)


def test_ray_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(
        ValueError, match=r"executor 'ray' needs Ray.*pip install normtheory\[ray\]"
    ):
        check_executor("ray", 1, 1, None)


def test_execute_refuses_an_unknown_executor():
    with pytest.raises(ValueError, match="unknown executor 'dask'; valid: local, process, ray"):
        list(execute([_job()], "dask"))
    assert EXECUTORS == ("local", "process", "ray")


def test_outcome_defaults_are_empty():
    outcome = Outcome("completed")
    assert outcome.records.empty and outcome.info == {} and outcome.error == ""
