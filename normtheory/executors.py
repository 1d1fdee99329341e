"""Executors: where a sweep's cells run. The driver plans, skips and stores; executors only run.

- ``local``: sequential, in the driver's process (the embedded default).
- ``process``: a pool of `workers` local processes (``forkserver`` context, so workers start
  from a clean interpreter and torch's thread pools are not inherited half-initialised).
- ``ray``: one Ray task per cell on an existing cluster (``address``) or a local Ray instance;
  ``num_gpus=1`` per task when the cells run on CUDA. Ray is optional: ``pip install
  normtheory[ray]``.

Every executor runs the same pure function, `run_job`, on a `Job` and yields ``(job, Outcome)``
pairs as cells finish. A worker reloads the study from its reference (name or file path) and
sets torch's thread count to ``job.threads``, so the same seeds give bit-identical numbers on
CPU whichever executor ran them.
"""

import functools
import multiprocessing
import os
import pickle
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from normtheory.amp import use_amp
from normtheory.data import use_data_root

EXECUTORS = ("local", "process", "ray")


@dataclass(frozen=True)
class Job:
    """One cell × seed to run.

    Attributes:
        study: the study's reference for `normtheory.registry.load_study` (name or .py path).
        cell: the pickled cell (unpickled after the study is loaded, so a cell class defined in
            a user's study file resolves in a fresh worker).
        seed, device, threads: passed to the study's ``run_cell``; torch threads while it runs.
        cell_id, label: where and under which name the driver stores the outcome.
        data_root: the folder of the local datasets, set around the cell (`use_data_root`),
            so a worker process or a Ray task reads the data the driver checked.
        amp: the mixed-precision mode set around the cell (`normtheory.amp.use_amp`).
    """

    study: str
    cell: bytes
    seed: int
    device: str
    threads: int
    cell_id: str
    label: str
    data_root: str | None = None
    amp: str = "off"


@dataclass
class Outcome:
    """What running a job gave: a `TrainResult`-like result, or the error it raised."""

    status: str  # completed | diverged | failed
    records: pd.DataFrame = field(default_factory=pd.DataFrame)
    info: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@functools.lru_cache(maxsize=4)
def _load_study(ref: str):
    from normtheory.registry import load_study

    return load_study(ref)


def run_job(job: Job, study=None, progress=None) -> Outcome:
    """Runs one job; a cell that raises gives ``Outcome("failed", error=...)``, never raises."""
    threads = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    try:
        study = study if study is not None else _load_study(job.study)
        cell = pickle.loads(job.cell)
        with use_data_root(job.data_root), use_amp(job.amp):
            result = study.run_cell(
                cell, job.seed, device=job.device, hooks=study.hooks(cell), progress=progress
            )
        return Outcome(
            status=result.status,
            records=result.records,
            info={
                "diverged_at": result.diverged_at,
                "steps_done": result.steps_done,
                "final": result.final,
                "wall_time": result.wall_time,
                "steps_per_s": getattr(result, "steps_per_s", None),
            },
        )
    except Exception as err:  # a failing cell is an outcome; the sweep goes on
        message = str(err).splitlines()[0] if str(err) else ""
        where = traceback.extract_tb(err.__traceback__)[-1]
        return Outcome(
            status="failed",
            error=f"{type(err).__name__}: {message}",
            info={"error_at": f"{where.filename}:{where.lineno}"},
        )
    finally:
        torch.set_num_threads(threads)


def check_executor(name: str, workers: int, threads: int, ray_address: str | None) -> None:
    """Raises ValueError naming the bad value when the executor settings make no sense."""
    from normtheory.checks import check_choice, check_int

    check_choice("executor", name, EXECUTORS)
    check_int("workers", workers)
    check_int("threads", threads)
    if ray_address is not None and name != "ray":
        raise ValueError(f"ray_address {ray_address!r} needs executor 'ray', not {name!r}")
    if name == "ray":
        import_ray()


def import_ray():
    """The ``ray`` module, or a one-line ValueError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ValueError(
            "executor 'ray' needs Ray, which is not installed: pip install normtheory[ray]"
        ) from None
    return ray


def execute(
    jobs: Iterable[Job],
    executor: str = "local",
    *,
    workers: int = 1,
    ray_address: str | None = None,
    study=None,
    progress=None,
) -> Iterator[tuple[Job, Outcome]]:
    """Runs `jobs` on the named executor, yielding ``(job, outcome)`` as each one finishes.

    Args:
        jobs: the cells to run.
        executor: ``local``, ``process`` or ``ray``.
        workers: processes of the ``process`` pool (and the CPUs of a local Ray instance).
        ray_address: ``auto`` or ``HOST:PORT`` of a running Ray cluster; None starts a local one.
        study: the loaded study, reused by the ``local`` executor instead of reloading it.
        progress: a rich Progress for per-step bars (``local`` only).
    """
    jobs = list(jobs)
    if executor == "local":
        for job in jobs:
            yield job, run_job(job, study, progress)
    elif executor == "process":
        yield from _process(jobs, workers)
    elif executor == "ray":
        yield from _ray(jobs, workers, ray_address)
    else:
        raise ValueError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")


def watch_driver(driver: int, every: float = 1.0) -> None:
    """Pool-worker initializer: ends this worker once the `driver` process is gone.

    A driver killed by a signal it cannot catch (``kill``, the out-of-memory killer) runs no
    clean-up, and its pool workers — children of the fork server, not of the driver — would
    finish their cells for nobody, holding the cores for as long as a cell takes. A daemon
    thread asks every `every` seconds whether `driver` still exists and exits the worker if
    not; it only sleeps otherwise, so the cell's numbers do not change.
    """

    def watch():
        while True:
            time.sleep(every)
            try:
                os.kill(driver, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # a process of another user took the pid: ours is gone
                os._exit(1)

    threading.Thread(target=watch, name="normtheory-driver-watch", daemon=True).start()


def _lost(job: Job, err: BaseException) -> Outcome:
    """The outcome of a job whose worker died (killed, out of memory, ...)."""
    return Outcome("failed", error=f"worker lost: {type(err).__name__}: {err}".splitlines()[0])


def _process(jobs: list[Job], workers: int) -> Iterator[tuple[Job, Outcome]]:
    context = multiprocessing.get_context("forkserver")
    # The fork server imports torch and the library once (it runs no torch op, so it starts
    # no thread pool); each worker forks from it instead of importing everything again.
    studies = sorted({f"studies.{j.study}" for j in jobs if not j.study.endswith(".py")})
    context.set_forkserver_preload(["normtheory.study", "normtheory.experiment", *studies])
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=watch_driver, initargs=(os.getpid(),)
    )
    pending = {pool.submit(run_job, job): job for job in jobs}
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                try:
                    yield job, future.result()
                except Exception as err:  # BrokenProcessPool and friends
                    yield job, _lost(job, err)
    finally:
        # Interrupted (Ctrl-C, generator closed): drop queued cells, do not wait for running ones
        # (their workers end with the driver, `watch_driver`).
        pool.shutdown(wait=not pending, cancel_futures=True)


def _ray(jobs: list[Job], workers: int, address: str | None) -> Iterator[tuple[Job, Outcome]]:
    ray = import_ray()
    started_here = False
    if not ray.is_initialized():
        kw = {"address": address} if address else {"num_cpus": max(workers, 1)}
        ray.init(**kw, include_dashboard=False, log_to_driver=False)
        started_here = True
    try:
        remote = ray.remote(run_job)
        pending = {}
        for job in jobs:
            gpus = 1 if job.device.startswith("cuda") else 0
            pending[remote.options(num_cpus=1, num_gpus=gpus, max_retries=0).remote(job)] = job
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    yield job, ray.get(ref)
                except Exception as err:  # the worker died; the task never returned
                    yield job, _lost(job, err)
    finally:
        if started_here:
            ray.shutdown()
