"""Sinks: where a `Monitor` sends the hooks' records in a user's own training loop.

A sink takes rows ``(step, metric, key, value)`` as they are recorded (`write`), makes them
durable on `flush` (the monitor flushes at its ``end`` event) and releases its resources on
`close`. `MemorySink` (the default) keeps them for ``monitor.frame()``; `CSVSink` appends to a
CSV file as it goes; `ParquetSink` writes one Parquet table atomically on flush;
`TensorBoardSink` logs scalars through ``torch.utils.tensorboard`` (needs ``tensorboard``:
``pip install normtheory[tensorboard]``); and `WandbSink` logs them to a Weights & Biases run
(``pip install normtheory[wandb]``), whose errors never stop training.
"""

import csv
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

Row = tuple[int, str, str, float]
COLUMNS = ["step", "metric", "key", "value"]


class Sink:
    """Base class of sinks: `write` rows, `flush`, `close` (both no-ops by default)."""

    def write(self, rows: Iterable[Row]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.flush()


class MemorySink(Sink):
    """Keeps every row in memory; `frame` returns them as a tidy DataFrame."""

    def __init__(self):
        self.rows: list[Row] = []

    def write(self, rows: Iterable[Row]) -> None:
        self.rows.extend(rows)

    def frame(self, pivot: bool = False) -> pd.DataFrame:
        """The rows as a tidy DataFrame, or with ``pivot=True`` the wide one of `pivot_records`."""
        frame = pd.DataFrame(self.rows, columns=COLUMNS)
        return pivot_records(frame) if pivot else frame


def column_name(metric: str, key: str) -> str:
    """The name of a record's column in the wide view and its tag in TensorBoard and W&B:
    ``metric`` for a whole-model value (key ""), else ``metric/key``."""
    return f"{metric}/{key}" if key else metric


def pivot_records(frame: pd.DataFrame) -> pd.DataFrame:
    """The wide view of tidy records: one row per step (the index, ascending), one column per
    (metric, key) named by `column_name`, in the order the records first appear; NaN where
    nothing was recorded at a step. A (step, metric, key) recorded twice keeps its last value.

    Args:
        frame: tidy records with the columns step, metric, key, value (extra columns, such as
            a run folder's run/cell/seed, are refused: pivot one run at a time).
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    extra = [c for c in frame.columns if c not in COLUMNS]
    if missing or extra:
        raise ValueError(
            f"pivot_records needs exactly the columns {COLUMNS}; "
            + (f"missing {missing}" if missing else f"got the extra columns {extra}")
            + " (select one run first)"
        )
    names = [column_name(m, k) for m, k in zip(frame.metric, frame.key)]
    tidy = pd.DataFrame({"step": frame.step.to_numpy(), "column": names, "value": frame.value})
    tidy = tidy.drop_duplicates(["step", "column"], keep="last")
    order = list(dict.fromkeys(names))
    wide = tidy.pivot(index="step", columns="column", values="value")
    wide = wide.reindex(columns=order).sort_index()
    wide.columns.name = None
    return wide.astype(float)


def _file_path(kind: str, path: str | os.PathLike, suffix: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{kind} path {str(path)!r} is a folder; give a file name ending {suffix}")
    if path.parent.exists() and not path.parent.is_dir():
        raise ValueError(f"{kind} path {str(path)!r}: {str(path.parent)!r} is a file, not a folder")
    return path


class CSVSink(Sink):
    """Appends rows to a CSV file (header ``step,metric,key,value``) as they are recorded.

    Args:
        path: the CSV file; created (with its folder) on the first write, overwritten if present.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = _file_path("CSVSink", path, ".csv")
        self._fh = None
        self._writer = None

    def write(self, rows: Iterable[Row]) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", newline="")  # noqa: SIM115 (closed by close())
            self._writer = csv.writer(self._fh)
            self._writer.writerow(COLUMNS)
        self._writer.writerows(rows)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class ParquetSink(Sink):
    """Collects rows and writes them as one Parquet table on `flush` (atomically: temp + rename),
    so the file on disk is always a complete table of the rows recorded up to the last flush."""

    def __init__(self, path: str | os.PathLike):
        self.path = _file_path("ParquetSink", path, ".parquet")
        self._memory = MemorySink()

    def write(self, rows: Iterable[Row]) -> None:
        self._memory.write(rows)

    def flush(self) -> None:
        from normtheory.atomic import atomic_write_bytes

        atomic_write_bytes(self.path, self._memory.frame().to_parquet(index=False))


class TensorBoardSink(Sink):
    """Logs each row as a TensorBoard scalar: tag ``metric`` or ``metric/key``, at ``step``.

    Args:
        log_dir: the event files' folder (as ``SummaryWriter(log_dir)``).
    """

    def __init__(self, log_dir: str | os.PathLike):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError(
                "TensorBoardSink needs tensorboard, which is not installed: "
                "pip install normtheory[tensorboard]"
            ) from None
        if Path(log_dir).exists() and not Path(log_dir).is_dir():
            raise ValueError(f"TensorBoardSink log_dir {str(log_dir)!r} is a file, not a folder")
        self.log_dir = Path(log_dir)
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def write(self, rows: Iterable[Row]) -> None:
        for step, metric, key, value in rows:
            self._writer.add_scalar(column_name(metric, key), value, step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class WandbSink(Sink):
    """Logs the rows to a Weights & Biases run: each as ``metric`` or ``metric/key`` (as in
    TensorBoard), plotted against the training step ``step_metric``.

    The steps go in as a metric of their own (``wandb.define_metric(tag,
    step_metric=step_metric)``), not as W&B's internal ``step``, so the sink can share a run
    that another logger writes to at its own pace (the Lightning or Hugging Face W&B loggers).
    Errors of W&B while logging never stop training: the first is reported as a
    `RuntimeWarning`, every one is counted in `errors`, and the sink keeps trying.

    Args:
        run: a run to log into (e.g. ``wandb.run``, a logger's ``experiment``), left open by
            `close`; None: ``wandb.init(**init)`` starts one, finished by `close`.
        step_metric: the name of the step axis.
        **init: keyword arguments of ``wandb.init`` (``project=``, ``name=``, ``dir=``,
            ``mode="offline"``, ...); only without `run`.
    """

    def __init__(self, run: Any = None, *, step_metric: str = "normtheory/step", **init: Any):
        try:
            import wandb
        except ImportError:
            raise ValueError(
                "WandbSink needs wandb, which is not installed: pip install normtheory[wandb]"
            ) from None
        if run is not None and init:
            raise ValueError(f"WandbSink: give run= or wandb.init arguments, not both ({init})")
        self._own = run is None
        self.run = wandb.init(**init) if run is None else run
        self.step_metric = step_metric
        self.errors = 0
        self._defined: set[str] = set()
        self._guard(self.run.define_metric, step_metric)

    def _guard(self, call, *args, **kw) -> None:
        try:
            call(*args, **kw)
        except Exception as error:  # a logger must not end a run that took hours
            self.errors += 1
            if self.errors == 1:
                warnings.warn(
                    f"WandbSink: {type(error).__name__}: {error}; training goes on, and the "
                    "other sinks still get every record (further W&B errors are counted in "
                    "WandbSink.errors, not reported)",
                    RuntimeWarning,
                    stacklevel=3,
                )

    def write(self, rows: Iterable[Row]) -> None:
        by_step: dict[int, dict[str, float]] = {}
        for step, metric, key, value in rows:
            by_step.setdefault(int(step), {})[column_name(metric, key)] = float(value)
        for step, values in by_step.items():
            for tag in values.keys() - self._defined:
                self._guard(self.run.define_metric, tag, step_metric=self.step_metric)
                self._defined.add(tag)
            self._guard(self.run.log, {self.step_metric: step, **values})

    def close(self) -> None:
        if self._own:
            self._guard(self.run.finish)


def check_sinks(sinks: Iterable[Sink]) -> list[Sink]:
    """The sinks as a list; anything without ``write`` raises naming it."""
    sinks = list(sinks)
    bad = [s for s in sinks if not callable(getattr(s, "write", None))]
    if bad:
        raise TypeError(
            f"sinks must be Sink objects (MemorySink, CSVSink, ParquetSink, TensorBoardSink, "
            f"WandbSink), "
            f"got {bad[0]!r}"
        )
    return sinks
