"""Fake local datasets in the real file formats, for the loader and the end-to-end tests.

CIFAR-10: the "python version" batches, pickled dicts with ``b"data"`` (n, 3072) uint8 (the R,
G, B planes of each image, row-major) and ``b"labels"``. MNIST / Fashion-MNIST: IDX files,
magic ``0x0000 08 <ndim>`` and big-endian sizes, then the uint8 values.
"""

import gzip
import pickle
import struct

import numpy as np

CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_cifar(folder, rng, sizes=(3, 2, 4, 1, 2, 5)):
    """Writes the six batches (``sizes`` images each) into ``folder``; returns [(data, labels)]."""
    folder.mkdir(parents=True)
    raw = []
    for name, n in zip(CIFAR_FILES, sizes):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, f)
        raw.append((data, labels))
    return raw


def idx(magic, shape, data):
    """The bytes of an IDX file."""
    return struct.pack(f">{1 + len(shape)}I", magic, *shape) + data.tobytes()


def write_idx_set(folder, rng, n_train=6, n_test=4, gz=("train-images-idx3-ubyte",)):
    """The four MNIST-named IDX files (those in ``gz`` gzipped); returns {file name: array}."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, a in arrays.items():
        blob = idx(0x0800 + a.ndim, a.shape, a)
        if name in gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (folder / name).write_bytes(blob)
    return arrays
