"""Datasets read from local files: where they are (the data root), reading them (once per
process) and their standardization; `normtheory.data` registers the loaders.

The data root is, first found: the keyword ``root``, the innermost `use_data_root` (the CLI's
``--data-root``, set around every cell), the environment variable ``NORMTHEORY_DATA``.
``fashion_mnist`` is also found where Debian's package ``dataset-fashion-mnist`` installs it.
Every error is one line (the CLI and a failed cell's record keep an error's first line) saying
what is missing, where it was looked for and how to provide it.
"""

import functools
import gzip
import math
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]  # x_tr, y_tr, x_te, y_te, C

_ROOT: ContextVar[str | None] = ContextVar("normtheory_data_root", default=None)


@contextmanager
def use_data_root(root: str | Path | None) -> Iterator[None]:
    """Within the block, local datasets are read from ``root`` (None: no change).

    The sweep runs every cell inside one (``--data-root``), in whichever process runs it, so a
    data root is where data lives, never part of a cell's config.
    """
    token = _ROOT.set(_ROOT.get() if root is None else str(root))
    try:
        yield
    finally:
        _ROOT.reset(token)


def data_root() -> str | None:
    """The data root in force: the innermost `use_data_root`, else ``NORMTHEORY_DATA``, else
    None."""
    return _ROOT.get() or os.environ.get("NORMTHEORY_DATA") or None


_HOW = (
    "name that folder with --data-root DIR (or the NORMTHEORY_DATA environment variable, or "
    "root=... in load_dataset). normtheory never downloads data."
)


def _missing(name: str, what: str, layout: str) -> FileNotFoundError:
    """One line (the CLI and a failed cell's record keep the first line of an error)."""
    layout = " ".join(layout.split())
    return FileNotFoundError(
        f"{name}: {what}; put a local copy in a folder laid out as {layout} and {_HOW}"
    )


def _root(root, name: str, layout: str) -> Path:
    root = root if root is not None else data_root()
    if root is None:
        raise _missing(name, "no data folder given", layout)
    return Path(root).expanduser()


@functools.lru_cache(maxsize=16)
def _decode(path: str, stamp: tuple, kind: str):
    """Reads one file (cached per process: ``stamp`` is its inode, size and mtime, so a changed
    file is read again); the arrays returned are read-only, as they are shared."""
    if kind == "cifar":
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data, labels = batch.get(b"data"), batch.get(b"labels")
        if not isinstance(data, np.ndarray) or labels is None or data.shape[1:] != (3072,):
            raise ValueError(f"cifar10: {path} is not a CIFAR-10 python batch")
        out = (np.asarray(data, dtype=np.uint8), np.asarray(labels, dtype=np.int64))
    else:
        out = (_read_idx(Path(path), ndim=int(kind[-1])),)
    for a in out:
        a.flags.writeable = False
    return out


def _read(path: Path, kind: str):
    st = path.stat()
    return _decode(str(path.resolve()), (st.st_ino, st.st_size, st.st_mtime_ns), kind)


def _standardize_bytes(x_tr: np.ndarray, x_te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x - mean_c) / std_c for uint8 images (N, C, ...), with channel c's mean and population
    std over the train split: the same as on x / 255, computed exactly from integer sums; the
    result is the float64 value rounded once to float32 (a lookup table of the 256 levels)."""
    axes = tuple(i for i in range(x_tr.ndim) if i != 1)
    n = x_tr.size // x_tr.shape[1]
    s1 = x_tr.sum(axis=axes, dtype=np.int64)  # (C,)
    s2 = np.square(x_tr, dtype=np.uint16).sum(axis=axes, dtype=np.int64)  # (C,), exact
    levels = np.arange(256, dtype=np.float64)
    luts = [
        (levels - a / n) / math.sqrt((n * b - a * a) / n**2)
        for a, b in zip(s1.tolist(), s2.tolist())
    ]
    out = []
    for x in (x_tr, x_te):
        y = np.empty(x.shape, dtype=np.float32)
        for c, lut in enumerate(luts):
            y[:, c] = lut.astype(np.float32)[x[:, c]]
        out.append(y)
    return out[0], out[1]


_CIFAR_LAYOUT = (
    "  <root>/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch\n"
    "(the CIFAR-10 'python version' archive from the Toronto CIFAR page by Alex Krizhevsky, "
    "cifar-10-python.tar.gz, extracted into <root>)"
)
_CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _find_cifar10(root) -> list[Path]:
    base = _root(root, "cifar10", _CIFAR_LAYOUT)
    folder = base / "cifar-10-batches-py"
    folder = folder if folder.is_dir() else base  # also accept root = the batches folder
    missing = [n for n in _CIFAR_FILES if not (folder / n).is_file()]
    if missing:
        raise _missing("cifar10", f"missing {', '.join(missing)} in {folder}", _CIFAR_LAYOUT)
    return [folder / n for n in _CIFAR_FILES]


def _load_cifar10(seed: int, root) -> Arrays:
    """CIFAR-10 python pickles (so only trusted files!); /255, per-channel train mean/std."""
    batches = [_read(path, "cifar") for path in _find_cifar10(root)]
    # Rows are the R, G, B planes of an image, each row-major: (n, 3072) -> (n, 3, 32, 32).
    xs = [data.reshape(-1, 3, 32, 32) for data, _ in batches]
    x_tr, x_te = _standardize_bytes(np.concatenate(xs[:5]), xs[5])
    return x_tr, np.concatenate([y for _, y in batches[:5]]), x_te, batches[5][1].copy(), 10


_IDX_FILES = {
    "x_tr": "train-images-idx3-ubyte",
    "y_tr": "train-labels-idx1-ubyte",
    "x_te": "t10k-images-idx3-ubyte",
    "y_te": "t10k-labels-idx1-ubyte",
}
_IDX_NAMES = ", ".join(_IDX_FILES.values())
_MNIST_LAYOUT = (
    f"  <root>/MNIST/raw/<file>  or  <root>/<file>   for <file> in {_IDX_NAMES} "
    "(each optionally gzipped as <file>.gz; the original IDX files by LeCun et al.)"
)


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parses an IDX file of uint8 values: magic 0x0000 08 <ndim>, then ndim big-endian sizes."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != 0x0800 + ndim:
        raise ValueError(f"{path} is not an IDX uint8 file with {ndim} dims (magic {magic!r})")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    start = 4 + 4 * ndim
    if len(raw) - start != math.prod(shape):
        raise ValueError(f"{path}: header says shape {shape} but holds {len(raw) - start} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(shape)


def _idx_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """The four IDX files in ``folder`` (each plain or .gz): (found paths, missing names)."""
    found, missing = {}, []
    for key, name in _IDX_FILES.items():
        path = next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)
        if path is None:
            missing.append(name)
        else:
            found[key] = path
    return found, missing


def _load_idx(name: str, files: dict[str, Path]) -> Arrays:
    """An IDX image set: (N, 1, 28, 28) uint8 images /255, one train mean/std (its one channel)."""
    a = {k: _read(p, "idx3" if k.startswith("x") else "idx1")[0] for k, p in files.items()}
    for split in ("tr", "te"):
        if len(a[f"x_{split}"]) != len(a[f"y_{split}"]):
            raise ValueError(
                f"{name}: {files[f'x_{split}']} holds {len(a[f'x_{split}'])} images "
                f"but {files[f'y_{split}']} {len(a[f'y_{split}'])} labels"
            )
    x_tr, x_te = _standardize_bytes(a["x_tr"][:, None], a["x_te"][:, None])
    return x_tr, a["y_tr"].astype(np.int64), x_te, a["y_te"].astype(np.int64), 10


def _find_mnist(root) -> dict[str, Path]:
    base = _root(root, "mnist", _MNIST_LAYOUT)
    folder = base / "MNIST" / "raw" if (base / "MNIST" / "raw").is_dir() else base
    files, missing = _idx_files(folder)
    if missing:
        what = ", ".join(f"{n} (or {n}.gz)" for n in missing)
        raise _missing("mnist", f"missing {what} in {folder}", _MNIST_LAYOUT)
    return files


def _load_mnist(seed: int, root) -> Arrays:
    """MNIST from local IDX files; /255 then one scalar mean/std from train."""
    return _load_idx("mnist", _find_mnist(root))


# Debian/Ubuntu's package dataset-fashion-mnist installs the four .gz files in
# /usr/share/datasets/fashion-mnist: that is <root>/fashion-mnist with this root.
_SYSTEM_ROOT = Path("/usr/share/datasets")
_FASHION_DIRS = ("fashion-mnist", "FashionMNIST/raw")  # Debian's name; torchvision's layout


def _find_fashion_mnist(root) -> dict[str, Path]:
    """The first of <root>/fashion-mnist, <root>/FashionMNIST/raw, then the same under
    /usr/share/datasets, that exists (never <root> itself: MNIST's files have the same names)."""
    root = root if root is not None else data_root()
    bases = [Path(root).expanduser()] if root is not None else []
    searched = []
    for base in [*bases, _SYSTEM_ROOT]:
        for sub in _FASHION_DIRS:
            folder = base / sub
            if not folder.is_dir():
                searched.append(str(folder))
                continue
            files, missing = _idx_files(folder)
            if missing:
                raise FileNotFoundError(
                    f"fashion_mnist: missing {', '.join(missing)} (or .gz) in {folder}"
                )
            return files
    raise FileNotFoundError(
        f"fashion_mnist: not found (looked in {', '.join(searched)}); install it with "
        "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu: the Zalando IDX files in "
        f"{_SYSTEM_ROOT / 'fashion-mnist'}), or put the four files ({_IDX_NAMES}, each "
        f"optionally .gz) in <root>/fashion-mnist/ and {_HOW}"
    )


def _load_fashion_mnist(seed: int, root) -> Arrays:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; Zalando): 60k + 10k 28x28 grey images of 10
    kinds of clothing, MNIST's IDX format; /255 then the train mean/std, as for MNIST."""
    return _load_idx("fashion_mnist", _find_fashion_mnist(root))


# name -> (loader(seed, root) -> Arrays, finder(root): the files, or the one-line error)
LOCAL = {
    "cifar10": (_load_cifar10, _find_cifar10),
    "fashion_mnist": (_load_fashion_mnist, _find_fashion_mnist),
    "mnist": (_load_mnist, _find_mnist),
}
