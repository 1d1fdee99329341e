"""Run folders: a manifest plus one tidy Parquet table and one completion record per cell × seed.

Layout of a run folder::

    manifest.json              resolved config, seeds, git commit, versions, device, times
    cells/<cell_id>.parquet    records: run, cell, seed, step, metric, key, value
    cells/<cell_id>.json       completion record: cell fields, seed, status, final metrics

Every file is written atomically (temp file ``.<name>.*.tmp`` + rename) and the JSON record is
written after the Parquet table, so a cell is complete exactly when its JSON record exists: a run
killed at any point is resumed by skipping complete cells, and a half-written file is never read
as complete (temp files left by a kill are ignored; a table without its record is recomputed).
`RunDir.check` refuses a folder holding corrupt or foreign files, naming the file; nothing in a
results folder is ever deleted.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from normtheory.atomic import atomic_write_bytes, atomic_write_json
from normtheory.provenance import now

RECORD_COLUMNS = ["run", "cell", "seed", "step", "metric", "key", "value"]
MANIFEST = "manifest.json"
_RECORD_KEYS = ("cell_id", "cell_label", "fields", "seed", "status")
STATUSES = ("completed", "diverged", "failed")


class ResultsError(ValueError):
    """A results folder that is missing, corrupt or made with a different config."""


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultsError(f"corrupt results file {path}: {err}") from None
    if not isinstance(obj, dict):
        raise ResultsError(f"corrupt results file {path}: expected a JSON object")
    return obj


def _is_temp(path: Path) -> bool:
    """A temp file of `atomic_write_bytes` (left behind when a write was killed)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def _check_record(path: Path) -> None:
    record = _read_json(path)
    missing = [k for k in _RECORD_KEYS if k not in record]
    if missing:
        raise ResultsError(
            f"corrupt results file {path}: not a cell record (missing {', '.join(missing)})"
        )
    if record["status"] not in STATUSES:
        raise ResultsError(
            f"corrupt results file {path}: status {record['status']!r} is not one of "
            f"{', '.join(STATUSES)}"
        )
    if record["cell_id"] != path.stem:
        raise ResultsError(f"corrupt results file {path}: holds cell {record['cell_id']!r}")
    if not path.with_suffix(".parquet").exists():
        raise ResultsError(f"results file {path} has no table {path.with_suffix('.parquet').name}")


def _check_table(path: Path) -> None:
    try:
        columns = pq.read_schema(path).names  # footer only: cheap even for big tables
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise ResultsError(f"corrupt results file {path}: {str(err).splitlines()[0]}") from None
    missing = [c for c in RECORD_COLUMNS if c not in columns]
    if missing:
        raise ResultsError(f"corrupt results file {path}: missing columns {', '.join(missing)}")


class RunDir:
    """One study run's folder on disk."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def cells_dir(self) -> Path:
        return self.path / "cells"

    # --- manifest ---------------------------------------------------------------------------
    def open(self, manifest: dict, comparable=None) -> dict:
        """Creates the folder, or checks that an existing one was made with the same config.

        Returns the manifest in force. An existing run with a different ``config`` raises
        `ResultsError` naming the differing keys; nothing stored is touched. ``comparable`` maps a
        config to the form that is compared (the sweep drops cell fields left at their defaults,
        so a field added after a run started does not block its resume).
        """
        if self.path.exists() and not self.path.is_dir():
            raise ResultsError(f"results path {self.path} is a file, not a folder")
        path = self.path / MANIFEST
        if path.exists():
            self.check()
            old = _read_json(path)
            old_config, new_config = old.get("config", {}), manifest["config"]
            same = comparable or (lambda config: config)
            old_cmp, new_cmp = same(old_config), same(new_config)
            if _without_seeds(old_cmp) != _without_seeds(new_cmp):
                keys = sorted(
                    k
                    for k in set(old_cmp) | set(new_cmp)
                    if k != "seeds" and old_cmp.get(k) != new_cmp.get(k)
                )
                raise ResultsError(
                    f"{self.path} holds a run with a different config (differs in: {', '.join(keys)}); "
                    "choose another --out folder or delete that one"
                )
            # More seeds extend the same run (cells of the first seeds are reused, never a
            # different config); fewer seeds leave the stored ones in place.
            seeds = max(int(old_config.get("seeds", 0) or 0), int(new_config.get("seeds", 0) or 0))
            manifest = {**old, "config": {**old_config, "seeds": seeds}, "resumed_at": now()}
        elif self.path.is_dir() and any(self.path.iterdir()):
            first = sorted(p.name for p in self.path.iterdir())[0]
            raise ResultsError(
                f"{self.path} is not empty and not a normtheory run folder (no {MANIFEST}; "
                f"found {first}); choose an empty or new --out folder"
            )
        try:
            atomic_write_json(path, manifest)
        except OSError as err:
            raise ResultsError(f"cannot write results to {self.path}: {err.strerror}") from None
        return manifest

    def manifest(self) -> dict:
        path = self.path / MANIFEST
        if not self.path.is_dir():
            raise ResultsError(f"no results folder at {self.path}")
        if not path.exists():
            raise ResultsError(f"{self.path} is not a normtheory run folder (no {MANIFEST})")
        return _read_json(path)

    def check(self) -> None:
        """Raises `ResultsError` naming the first corrupt or foreign file; never deletes anything.

        Accepted: ``manifest.json`` (a JSON object with ``study`` and ``config``); ``cells/``
        holding ``<id>.parquet`` tables with the record columns and ``<id>.json`` cell records
        that match their file name and have their table; temp files of interrupted writes and
        tables without a record (a write killed between the two), which count as not complete.
        """
        manifest = self.manifest()
        missing = [k for k in ("study", "config") if k not in manifest]
        if missing:
            raise ResultsError(
                f"corrupt results file {self.path / MANIFEST}: not a normtheory manifest "
                f"(missing {', '.join(missing)})"
            )
        for entry in sorted(self.path.iterdir()):
            if entry.name in (MANIFEST, "cells") or _is_temp(entry):
                continue
            raise ResultsError(
                f"foreign file {entry} in results folder {self.path}; "
                "a run folder holds only manifest.json and cells/ (move it elsewhere)"
            )
        if self.cells_dir.exists() and not self.cells_dir.is_dir():
            raise ResultsError(f"foreign file {self.cells_dir}: expected a folder of cells")
        for entry in sorted(self.cells_dir.iterdir()) if self.cells_dir.is_dir() else ():
            if _is_temp(entry):
                continue
            if entry.is_file() and entry.suffix == ".json":
                _check_record(entry)
            elif entry.is_file() and entry.suffix == ".parquet":
                _check_table(entry)
            else:
                raise ResultsError(
                    f"foreign file {entry} in results folder {self.path}; cells/ holds only "
                    "<cell>.parquet tables and <cell>.json records (move it elsewhere)"
                )

    def update_manifest(self, **fields: Any) -> None:
        atomic_write_json(self.path / MANIFEST, {**self.manifest(), **fields})

    # --- cells --------------------------------------------------------------------------------
    def is_complete(self, cell_id: str) -> bool:
        """True when the cell's record exists and it did not fail (failed cells are retried)."""
        record = self.cells_dir / f"{cell_id}.json"
        if not (record.exists() and record.with_suffix(".parquet").exists()):
            return False
        return _read_json(record).get("status") != "failed"

    def write_cell(self, cell_id: str, records: pd.DataFrame, summary: dict) -> None:
        """Stores one cell's records, then its completion record (the commit point)."""
        frame = records.reindex(columns=RECORD_COLUMNS)
        frame = frame.astype(
            {
                "run": "string",
                "cell": "string",
                "seed": "int64",
                "step": "int64",
                "metric": "string",
                "key": "string",
                "value": "float64",
            }
        )
        atomic_write_bytes(self.cells_dir / f"{cell_id}.parquet", frame.to_parquet(index=False))
        atomic_write_json(
            self.cells_dir / f"{cell_id}.json", {**summary, "cell_id": cell_id, "written_at": now()}
        )

    def cell_summaries(self) -> list[dict]:
        if not self.cells_dir.is_dir():
            return []
        return [
            _read_json(p)
            for p in sorted(self.cells_dir.glob("*.json"))
            if (p.with_suffix(".parquet")).exists()
        ]


def load(path: str | os.PathLike) -> pd.DataFrame:
    """All records of a run as one tidy DataFrame.

    Columns: run, cell, seed, step, metric, key, value, plus one column per cell field
    (e.g. ``norm``, ``batch_size``) so figures can group by them. Only complete cells are read.
    """
    run = RunDir(path)
    run.check()
    return _records(run, run.cell_summaries())


def load_cells(path: str | os.PathLike) -> pd.DataFrame:
    """One row per complete cell × seed: cell fields, seed, status, diverged_at, steps_done,
    wall time, steps per second, and the final metrics as ``final_<name>``."""
    run = RunDir(path)
    run.check()
    return _cells(run.cell_summaries())


def _records(run: RunDir, summaries: list[dict]) -> pd.DataFrame:
    """`load` of a checked run, from its complete cells' records."""
    frames, fields = [], []
    for summary in summaries:
        file = run.cells_dir / f"{summary['cell_id']}.parquet"
        try:
            frames.append(pd.read_parquet(file))
        except Exception as err:  # pyarrow raises several types for corrupt files
            raise ResultsError(f"corrupt results file {file}: {err}") from None
        fields.append({"cell": summary["cell_label"], **summary["fields"]})
    if not frames:
        return pd.DataFrame(columns=RECORD_COLUMNS)
    records = pd.concat(frames, ignore_index=True)
    cell_fields = pd.DataFrame(fields).drop_duplicates("cell")
    return records.merge(cell_fields, on="cell", how="left")


def _cells(summaries: list[dict]) -> pd.DataFrame:
    """`load_cells` from a checked run's complete cells' records."""
    rows = [
        {
            "cell": s["cell_label"],
            "cell_id": s["cell_id"],
            "seed": s["seed"],
            "status": s["status"],
            "diverged_at": s.get("diverged_at"),
            "steps_done": s.get("steps_done"),
            "wall_time": s.get("wall_time"),
            "steps_per_s": s.get("steps_per_s"),
            "error": s.get("error"),
            **s["fields"],
            **{f"final_{k}": v for k, v in s.get("final", {}).items()},
        }
        for s in summaries
    ]
    return pd.DataFrame(rows)


def _without_seeds(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "seeds"}


@dataclass(frozen=True)
class Results:
    """What a study's statistics and figures read: stored records, cells and manifest."""

    records: pd.DataFrame
    cells: pd.DataFrame
    manifest: dict

    @classmethod
    def load(cls, path) -> "Results":
        run = RunDir(path)
        run.check()  # once, and the cell records read once, for both tables
        summaries = run.cell_summaries()
        return cls(_records(run, summaries), _cells(summaries), run.manifest())
