"""Sinks: where a `Monitor` sends the hooks' records in a user's own training loop.

A sink takes rows ``(step, metric, key, value)`` as they are recorded (`write`), makes them
durable on `flush` (the monitor flushes at its ``end`` event) and releases its resources on
`close`. `MemorySink` (the default) keeps them for ``monitor.frame()``; `CSVSink` appends to a
CSV file as it goes; `ParquetSink` writes one Parquet table atomically on flush; and
`TensorBoardSink` logs scalars through ``torch.utils.tensorboard`` (needs ``tensorboard``:
``pip install normtheory[tensorboard]``).
"""

import csv
import os
from collections.abc import Iterable
from pathlib import Path

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

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=COLUMNS)


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
            self._writer.add_scalar(f"{metric}/{key}" if key else metric, value, step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def check_sinks(sinks: Iterable[Sink]) -> list[Sink]:
    """The sinks as a list; anything without ``write`` raises naming it."""
    sinks = list(sinks)
    bad = [s for s in sinks if not callable(getattr(s, "write", None))]
    if bad:
        raise TypeError(
            f"sinks must be Sink objects (MemorySink, CSVSink, ParquetSink, TensorBoardSink), "
            f"got {bad[0]!r}"
        )
    return sinks
