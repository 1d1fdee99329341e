"""Sweeps: a study's grid × seeds, planned and stored by the driver, run by an executor.

The driver (this module) resolves the grid, opens the run folder (`RunDir.open` checks an
existing one and refuses corrupt or foreign files), skips the cells already complete, hands the
rest to an executor (`normtheory.executors`: ``local``, ``process``, ``ray``), and writes each
finished cell atomically as it arrives. So a sweep killed at any point — even by SIGKILL —
resumes on rerun without recomputing complete cells, and a half-written file is never read as
complete (see `normtheory.results`).

Outcomes of a cell: ``completed``; ``diverged`` (non-finite loss; a recorded result, not an
error); ``failed`` (it raised, or its worker died: stored with the error and retried on the
next run). The sweep goes on past failures; `RunSummary` counts each outcome.
"""

import dataclasses
import hashlib
import json
import math
import os
import pickle
import re
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from normtheory.amp import check_amp
from normtheory.checks import check_int
from normtheory.claims import digests
from normtheory.data import check_dataset, list_datasets, use_data_root
from normtheory.executors import EXECUTORS, Job, Outcome, check_executor, execute
from normtheory.provenance import git_commit, now, versions
from normtheory.results import RunDir
from normtheory.study import parse_value
from normtheory.train import resolve_device

__all__ = ["EXECUTORS", "RunSummary", "run_sweep"]


@dataclass
class RunSummary:
    """Counts of a sweep's runs (cells × seeds) by outcome; ``skipped`` were complete already."""

    path: Path
    cells: int = 0
    seeds: int = 0
    total: int = 0
    skipped: int = 0
    completed: int = 0
    diverged: int = 0
    failed: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)  # "<cell> seed=<s>: <error>"

    def line(self, name: str) -> str:
        return (
            f"{name}: {self.total} runs ({self.cells} cells × {self.seeds} seeds) in {self.path} — "
            f"{self.completed} completed, "
            f"{self.diverged} diverged, {self.failed} failed, "
            f"{self.skipped} already complete (skipped)"
        )


def run_sweep(
    study,
    *,
    profile: str | None = None,
    seeds: int | None = None,
    device: str = "auto",
    out: str | Path | None = None,
    overrides: dict[str, str] | None = None,
    executor: str = "local",
    workers: int = 1,
    threads: int = 1,
    ray_address: str | None = None,
    data_root: str | Path | None = None,
    amp: str = "off",
    progress=None,
    command: str = "",
) -> RunSummary:
    """Runs every cell × seed of `study`'s `profile` into a run folder; complete cells are skipped.

    Args:
        study: a `normtheory.study.Study`.
        profile, seeds, overrides: which grid (default profile: `Study.default_profile`) (``overrides`` are CLI-style ``key=value``).
        device: ``auto``, ``cpu`` or ``cuda``.
        out: the run folder (default ``runs/<study>-<profile>``).
        executor, workers, ray_address: where cells run (see `normtheory.executors`).
        threads: torch threads per cell (1 by default, so numbers do not depend on `workers`).
        data_root: the folder of the local datasets (default: ``NORMTHEORY_DATA``); every cell
            runs inside `use_data_root` of it, in whichever process. Where data lives is not
            what is trained: it is recorded in the manifest, not in the cells' config or ids.
        amp: mixed precision of the training forward (``off``, ``bf16``, ``fp16``;
            `normtheory.amp`), set around every cell. It changes the numbers, so it is part of
            the run's config (when not ``off``, so older run folders still resume): a folder
            made with one setting refuses to resume with another. Not part of a cell's id.
        progress: a rich Progress, or None.
        command: the command line, stored in the manifest.

    Every argument is checked before the run folder is touched: bad input raises ValueError
    (`ResultsError` for the folder) and leaves stored files as they were. So are the grid's
    datasets (pre-flight): a local dataset whose files are missing raises FileNotFoundError, one
    line, before any cell runs.
    """
    from normtheory.registry import list_studies

    profile = study.default_profile if profile is None else profile
    prof = study.profile(profile)
    grid = prof.grid.override(overrides or {})
    cells = grid.cells()
    _check_overrides_matter(study.name, cells, overrides or {})
    n_seeds = prof.seeds if seeds is None else seeds
    check_int("seeds", n_seeds)
    check_executor(executor, workers, threads, ray_address)
    if executor != "local" and not (study.source or study.name in list_studies()):
        raise ValueError(
            f"executor {executor!r} reloads the study in each worker, so it must be in studies/ "
            f"or a .py file; study {study.name!r} is neither (use executor 'local')"
        )
    if executor == "ray" and device.startswith("cuda"):
        dev = device  # the GPUs are the cluster's; the driver may have none
    else:
        dev = str(resolve_device(device))
    check_amp(amp, dev)
    root = _preflight(cells, data_root)
    run = RunDir(out or Path("runs") / f"{study.name}-{profile}")
    config = {
        "study": study.name,
        "profile": profile,
        "seeds": n_seeds,
        **({"first_seed": prof.first_seed} if prof.first_seed else {}),
        "axes": list(grid.axes),
        **({"cases": [dict(c) for c in grid.cases]} if grid.cases else {}),
        "cells": [dataclasses.asdict(c) for c in cells],
        "overrides": dict(overrides or {}),
        **({"amp": amp} if amp != "off" else {}),
    }
    run.open(
        {
            "study": study.name,
            "profile": profile,
            "tier": study.tier(profile),
            "cost": prof.cost,
            "config": config,
            "git_commit": git_commit(),
            "versions": versions(),
            "device": dev,
            "started_at": now(),
            "command": command,
            "study_path": study.source,
            "tests": digests(study.claims),  # the registered tests in force at the first start
        },
        comparable=lambda stored: _comparable_config(stored, type(cells[0]) if cells else None),
    )
    run.update_manifest(
        executor={"name": executor, "workers": workers, "threads": threads, "ray": ray_address},
        data_root=root,
        amp=amp,
        **({"protocol_changes": list(prof.changes)} if prof.changes else {}),
    )
    summary = RunSummary(run.path, cells=len(cells), seeds=n_seeds)
    jobs = []
    for cell in cells:
        for seed in range(prof.first_seed, prof.first_seed + n_seeds):
            cid = cell_id(cell, grid.label_keys, seed)
            summary.total += 1
            if run.is_complete(cid):
                summary.skipped += 1
                continue
            label = cell_label(cell, grid.label_keys)
            ref = study.source or study.name
            jobs.append(Job(ref, pickle.dumps(cell), seed, dev, threads, cid, label, root, amp))
    task = None
    if progress is not None:
        # runs already stored count as done but not toward the pace the time left is guessed from
        task = progress.add_task(
            f"{study.name} [{profile}]", total=summary.total, completed=summary.skipped
        )
    speed = []  # (steps, seconds) of each cell run now
    for job, outcome in execute(
        jobs, executor, workers=workers, ray_address=ray_address, study=study, progress=progress
    ):
        _store(run, job, outcome)
        steps, rate = outcome.info.get("steps_done"), outcome.info.get("steps_per_s")
        if steps and rate and math.isfinite(rate) and rate > 0:
            speed.append((steps, steps / rate))
        setattr(summary, outcome.status, getattr(summary, outcome.status) + 1)
        if outcome.status == "failed":
            summary.errors.append(f"{job.label} seed={job.seed}: {outcome.error}")
        if task is not None:
            progress.update(task, advance=1)
    run.update_manifest(
        finished_at=now(),
        counts=dataclasses.asdict(summary) | {"path": str(run.path)},
        **({"steps_per_s": steps_per_s(speed)} if speed else {}),
    )
    return summary


def steps_per_s(speed: list[tuple[int, float]]) -> float:
    """Steps per second of a set of runs, from each one's (steps, seconds): total steps over
    total seconds (so a long run counts more than a short one)."""
    return sum(s for s, _ in speed) / sum(t for _, t in speed)


def _preflight(cells: list, data_root: str | Path | None) -> str | None:
    """The absolute data root (``data_root``, else ``NORMTHEORY_DATA``; None if neither), after
    checking that every dataset of the grid finds its files there (one-line error if not)."""
    if data_root is not None and not Path(data_root).expanduser().is_dir():
        raise FileNotFoundError(f"data root {data_root} is not a folder (--data-root)")
    root = data_root if data_root is not None else os.environ.get("NORMTHEORY_DATA") or None
    root = None if root is None else str(Path(root).expanduser().absolute())
    names = {getattr(c, "dataset", None) for c in cells} & set(list_datasets())
    with use_data_root(root):
        for name in sorted(names):
            check_dataset(name)
    return root


class OverrideIgnored(UserWarning):
    """A ``key=value`` override that some cells of the grid ignore."""


def _check_overrides_matter(name: str, cells: list, overrides: dict[str, str]) -> None:
    """Refuses an override that changes no cell (e.g. ``steps=`` where the study fixes the
    examples seen), naming why; warns when it changes only some cells."""
    why = [getattr(c, "unused_fields", dict)() for c in cells] if overrides else []
    for key, text in overrides.items():
        unused = [w[key] for w in why if key in w]
        if cells and not unused:  # the study may set the field itself (e.g. a tuned-LR table)
            kind = typing.get_type_hints(type(cells[0])).get(key, str)
            wanted = {parse_value(key, part, kind) for part in text.split(",")}
            replaced = [getattr(c, key) for c in cells if getattr(c, key) not in wanted]
            unused = [f"the study sets {key} itself (e.g. {v!r})" for v in replaced]
        if not unused:
            continue
        if len(unused) == len(cells):
            raise ValueError(f"{key}={text} would change nothing in {name}: {unused[0]}")
        warnings.warn(
            f"{key}={text} is ignored by {len(unused)} of {len(cells)} cells of {name}: "
            f"{unused[0]}",
            OverrideIgnored,
            stacklevel=3,
        )


def _store(run: RunDir, job: Job, outcome: Outcome) -> None:
    """Writes one finished cell: its records, then its completion record (the commit point)."""
    cell = pickle.loads(job.cell)
    base = {
        "cell_label": job.label,
        "fields": dataclasses.asdict(cell),
        "seed": job.seed,
        "device": job.device,
        "status": outcome.status,
        **outcome.info,
    }
    if outcome.status == "failed":
        run.write_cell(job.cell_id, pd.DataFrame(), {**base, "error": outcome.error})
        return
    records = outcome.records.assign(run=run.path.name, cell=job.label, seed=job.seed)
    run.write_cell(job.cell_id, records, base)


def cell_label(cell, axes) -> str:
    """Readable id of a cell from its axis values, e.g. ``norm=batch,batch_size=2``."""
    return ",".join(f"{k}={getattr(cell, k)}" for k in axes) or "base"


def _comparable_config(config: dict, cell_type) -> dict:
    """``config`` with each cell's fields that equal the cell type's defaults dropped, the form
    in which `cell_id` hashes cells: a run stored before a field with a neutral default existed
    compares equal to the same grid today."""
    if cell_type is None or not dataclasses.is_dataclass(cell_type):
        return config
    defaults = {f.name: f.default for f in dataclasses.fields(cell_type)}

    def reduced(cell: dict) -> dict:
        return {k: v for k, v in cell.items() if not _at_default(v, defaults.get(k, _MISSING))}

    return {**config, "cells": [reduced(c) for c in config.get("cells", [])]}


_MISSING = dataclasses.MISSING


def _at_default(value, default) -> bool:
    """Whether a cell field's value is its default (of the same type: 1 is not 1.0 nor True);
    never for a field without a default."""
    return default is not _MISSING and type(value) is type(default) and value == default


def _config_key(cell) -> dict:
    """The cell's fields that differ from their defaults (all fields of a cell type without
    defaults)."""
    out = {}
    for f in dataclasses.fields(cell):
        value = getattr(cell, f.name)
        if _at_default(value, f.default):
            continue
        out[f.name] = value if not dataclasses.is_dataclass(value) else dataclasses.asdict(value)
    return out


def cell_id(cell, axes, seed: int) -> str:
    """File-safe, config-unique id: readable axis values + a hash of the config + the seed.

    The hash covers every field whose value differs from the field's default (`_config_key`), so
    a field added later with a default that keeps the old behaviour leaves every stored cell's
    id, and a long sweep's resume, as they were."""
    digest = hashlib.sha1(json.dumps(_config_key(cell), sort_keys=True).encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(f"{getattr(cell, k)}" for k in axes))[:80]
    return f"{slug or 'base'}-{digest}-s{seed}"
