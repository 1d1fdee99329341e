"""Tests for normtheory.data: shapes, determinism, no RNG side effects, local-file loaders.

Oracles: sklearn/mnist1d called directly, numpy float64 statistics, and raw bytes written by
the tests themselves in the real CIFAR-10 (pickle) and MNIST (IDX) formats.
"""

import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_data import idx, write_cifar, write_idx_set

import normtheory.local_data
from normtheory.data import (
    ArrayDataset,
    check_dataset,
    data_root,
    list_datasets,
    load_dataset,
    split_validation,
    use_data_root,
)

SMALL = {  # name -> (kwargs, in_shape, num_classes, n_train, n_test)
    "digits": ({}, (1, 8, 8), 10, 1347, 450),
    "mnist1d": ({"num_samples": 500}, (1, 40), 10, 400, 100),
    "gaussian_mixture": ({}, (32,), 4, 1024, 512),
    "teacher": ({"dim": 16, "num_classes": 3, "n_train": 200}, (16,), 3, 200, 512),
}


def test_list_datasets():
    expected = ["cifar10", "digits", "fashion_mnist", "gaussian_mixture", "majority", "mnist"]
    expected.append("mnist1d")
    assert list_datasets() == [*expected, "teacher"]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_shapes_dtypes_classes(name):
    kw, in_shape, num_classes, n_train, n_test = SMALL[name]
    train, test = load_dataset(name, **kw)
    for ds, n in [(train, n_train), (test, n_test)]:
        assert isinstance(ds, ArrayDataset)
        assert (ds.name, ds.in_shape, ds.num_classes, len(ds)) == (name, in_shape, num_classes, n)
        assert ds.inputs.shape == (n, *in_shape) and ds.inputs.dtype == torch.float32
        assert ds.targets.shape == (n,) and ds.targets.dtype == torch.int64
        assert ds.tensors[0] is ds.inputs and ds.tensors[1] is ds.targets
        assert torch.isfinite(ds.inputs).all()
        assert set(ds.targets.tolist()) == set(range(num_classes))  # every class present
        x, y = ds[3]
        assert torch.equal(x, ds.inputs[3]) and y == ds.targets[3]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_deterministic_given_seed_and_different_across_seeds(name):
    kw = SMALL[name][0]
    a, b, c = (load_dataset(name, seed=s, **kw)[0] for s in (1, 1, 2))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert a.inputs.shape == c.inputs.shape and not torch.equal(a.inputs, c.inputs)


def _seed_globals(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_no_global_rng_side_effects(name):
    """mnist1d's make_dataset reseeds `random` and numpy globally; loading must undo that."""
    _seed_globals(123)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    _seed_globals(123)
    load_dataset(name, seed=7, **SMALL[name][0])
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


def test_digits_matches_sklearn_oracle_and_keeps_blank_pixels_constant():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        bunch.images / 16.0, bunch.target, test_size=0.3, random_state=5, stratify=bunch.target
    )
    mean, std = x_tr.mean(), x_tr.std()  # one scalar each, float64
    train, test = load_dataset("digits", seed=5, test_fraction=0.3)
    np.testing.assert_allclose(train.inputs[:, 0].numpy(), (x_tr - mean) / std, atol=1e-6)
    np.testing.assert_allclose(test.inputs[:, 0].numpy(), (x_te - mean) / std, atol=1e-6)
    assert train.targets.tolist() == y_tr.tolist() and test.targets.tolist() == y_te.tolist()
    flat = train.inputs.flatten(1)  # (N, 64)
    constant = (flat == flat[:1]).all(dim=0)
    assert constant.any(), "some always-blank pixels must stay constant across samples"


def test_mnist1d_matches_make_dataset_oracle():
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = 300, 4, 0.5
    state = np.random.get_state()
    oracle = make_dataset(args)
    np.random.set_state(state)
    train, test = load_dataset("mnist1d", seed=4, num_samples=300, train_split=0.5)
    np.testing.assert_allclose(train.inputs[:, 0].numpy(), oracle["x"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(test.inputs[:, 0].numpy(), oracle["x_test"], rtol=1e-6, atol=1e-6)
    assert train.targets.tolist() == oracle["y"].tolist()


@pytest.mark.parametrize("name", ["gaussian_mixture", "teacher"])
def test_low_rank_option(name):
    train, test = load_dataset(name, dim=20, rank=6)
    both = torch.cat([train.inputs, test.inputs]).numpy()  # (N, 20) float32
    assert np.linalg.matrix_rank(train.inputs.numpy()) == 6
    assert np.linalg.matrix_rank(both) == 6  # train and test share one subspace
    full, _ = load_dataset(name, dim=20)
    assert np.linalg.matrix_rank(full.inputs.numpy()) == 20


@pytest.mark.parametrize("rank", [None, 3])
def test_gaussian_mixture_means_have_norm_separation(rank):
    train, _ = load_dataset("gaussian_mixture", noise=0.0, separation=2.5, dim=8, rank=rank)
    np.testing.assert_allclose(train.inputs.norm(dim=1).numpy(), 2.5, rtol=1e-5)
    for c in range(4):  # noise-free: every sample of a class sits on its mean
        rows = train.inputs[train.targets == c]
        assert torch.allclose(rows, rows[:1].expand_as(rows))


def test_max_train_max_test_take_seeded_subsets_of_the_full_data():
    full, full_test = load_dataset("gaussian_mixture", seed=3)
    sub, sub_test = load_dataset("gaussian_mixture", seed=3, max_train=100, max_test=7)
    again, _ = load_dataset("gaussian_mixture", seed=3, max_train=100)
    assert (len(sub), len(sub_test)) == (100, 7)
    assert torch.equal(sub.inputs, again.inputs)
    assert not torch.equal(sub.inputs, full.inputs[:100])  # shuffled, not a prefix
    rows = {tuple(x.tolist()): int(y) for x, y in zip(full.inputs, full.targets)}
    assert all(rows[tuple(x.tolist())] == int(y) for x, y in zip(sub.inputs, sub.targets))
    big, _ = load_dataset("gaussian_mixture", seed=3, max_train=10**6)
    assert torch.equal(big.inputs, full.inputs)  # k >= N keeps everything, in order


def test_to_returns_a_new_dataset_with_same_metadata():
    train, _ = load_dataset("teacher", n_train=10, n_test=5)
    moved = train.to("cpu")
    assert moved is not train and isinstance(moved, ArrayDataset)
    assert (moved.name, moved.in_shape, moved.num_classes) == ("teacher", (32,), 4)
    assert torch.equal(moved.inputs, train.inputs) and torch.equal(moved.targets, train.targets)


# ---- local-file loaders on fake data in the real formats ---------------------------------------


@pytest.mark.parametrize("via_env", [False, True])
def test_cifar10_round_trips_fake_pickles(tmp_path, monkeypatch, via_env):
    raw = write_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(0))
    x_tr = np.concatenate([d for d, _ in raw[:5]]).reshape(-1, 3, 32, 32) / 255.0
    x_te = raw[5][0].reshape(-1, 3, 32, 32) / 255.0
    mean = x_tr.mean(axis=(0, 2, 3), keepdims=True)  # per channel, float64
    std = x_tr.std(axis=(0, 2, 3), keepdims=True)
    if via_env:
        monkeypatch.setenv("NORMTHEORY_DATA", str(tmp_path))
    train, test = load_dataset("cifar10", **({} if via_env else {"root": tmp_path}))
    assert train.in_shape == (3, 32, 32) and (len(train), len(test)) == (12, 5)
    np.testing.assert_allclose(train.inputs.numpy(), (x_tr - mean) / std, atol=1e-5)
    np.testing.assert_allclose(test.inputs.numpy(), (x_te - mean) / std, atol=1e-5)
    # Exact round trip, pixel by pixel: data row is 1024 R, then G, then B values, row-major.
    pixels = np.rint((test.inputs.numpy() * std + mean) * 255).astype(np.uint8)
    assert np.array_equal(pixels[1, 2, 5, 7], raw[5][0][1, 2 * 1024 + 5 * 32 + 7])
    assert np.array_equal(pixels.reshape(5, 3072), raw[5][0])
    assert train.targets.tolist() == sum((labels for _, labels in raw[:5]), [])


def test_cifar10_missing_files_say_what_to_put_where(tmp_path, monkeypatch):
    monkeypatch.delenv("NORMTHEORY_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*data_batch_1"):
        load_dataset("cifar10")
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, np.random.default_rng(0))
    (folder / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="missing test_batch") as err:
        load_dataset("cifar10", root=tmp_path)
    assert "never downloads" in str(err.value) and "python version" in str(err.value)
    # one line: a failed cell's record and the CLI keep an error's first line only
    assert len(str(err.value).splitlines()) == 1 and "NORMTHEORY_DATA" in str(err.value)


@pytest.mark.parametrize("layout", ["MNIST/raw", "."])
def test_mnist_round_trips_fake_idx_files(tmp_path, layout):
    arrays = write_idx_set(tmp_path / layout, np.random.default_rng(1))
    x_tr = arrays["train-images-idx3-ubyte"][:, None] / 255.0  # (6, 1, 28, 28) float64
    x_te = arrays["t10k-images-idx3-ubyte"][:, None] / 255.0
    mean, std = x_tr.mean(), x_tr.std()
    train, test = load_dataset("mnist", root=str(tmp_path))
    assert train.in_shape == (1, 28, 28) and (len(train), len(test)) == (6, 4)
    np.testing.assert_allclose(train.inputs.numpy(), (x_tr - mean) / std, atol=1e-5)
    np.testing.assert_allclose(test.inputs.numpy(), (x_te - mean) / std, atol=1e-5)
    pixels = np.rint((test.inputs.numpy()[:, 0] * std + mean) * 255).astype(np.uint8)
    assert np.array_equal(pixels, arrays["t10k-images-idx3-ubyte"])
    assert train.targets.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert test.targets.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_mnist_missing_files_list_expected_names(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("mnist", root=tmp_path)
    for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]:
        assert name in str(err.value)
    assert "MNIST/raw" in str(err.value) and "never downloads" in str(err.value)


@pytest.mark.parametrize("defect", ["magic", "truncated"])
def test_mnist_corrupt_idx_raises_value_error_naming_the_file(tmp_path, defect):
    folder = tmp_path / "MNIST" / "raw"
    arrays = write_idx_set(folder, np.random.default_rng(2), gz=())
    labels = arrays["t10k-labels-idx1-ubyte"]
    magic = 0x0803 if defect == "magic" else 0x0801  # images magic on a labels file
    blob = idx(magic, labels.shape, labels)[: -1 if defect == "truncated" else None]
    (folder / "t10k-labels-idx1-ubyte").write_bytes(blob)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", root=tmp_path)


# ---- argument errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kw", "needle"),
    [
        ("imagenet", {}, "unknown dataset 'imagenet'; known datasets: cifar10, digits"),
        ("digits", {"num_samples": 5}, "unknown keyword 'num_samples'.*test_fraction"),
        ("teacher", {"separation": 1.0}, "'separation'.*n_train"),
        ("teacher", {"rank": 32}, "rank must be < dim=32.*got 32"),
        ("gaussian_mixture", {"rank": 0}, "rank.*got 0"),
        ("gaussian_mixture", {"n_train": -5}, "n_train.*got -5"),
        ("gaussian_mixture", {"noise": -0.5}, "noise.*got -0.5"),
        ("digits", {"test_fraction": 1.5}, "test_fraction.*got 1.5"),
        ("digits", {"test_fraction": 0}, "test_fraction.*got 0"),
        ("digits", {"max_train": -1}, "max_train.*got -1"),
        ("teacher", {"max_test": 2.5}, "max_test.*got 2.5"),
        ("mnist1d", {"train_split": 1.0}, "train_split.*got 1.0"),
        ("mnist1d", {"num_samples": 3}, "num_samples.*got 3"),
    ],
)
def test_bad_arguments_raise_value_error_with_the_bad_value(name, kw, needle):
    with pytest.raises(ValueError, match=needle):
        load_dataset(name, **kw)


def test_bad_seed_raises():
    with pytest.raises(ValueError, match=re.escape("seed must be an integer >= 0, got -1")):
        load_dataset("teacher", seed=-1)


def test_grey_images_on_several_channels():
    grey, _ = load_dataset("digits", max_train=16)
    rgb, _ = load_dataset("digits", max_train=16, channels=3)
    assert rgb.in_shape == (3, 8, 8)
    for c in range(3):
        assert torch.equal(rgb.inputs[:, c], grey.inputs[:, 0])
    with pytest.raises(ValueError, match="unknown keyword 'channels' for 'teacher'"):
        load_dataset("teacher", channels=3)
    with pytest.raises(ValueError, match="channels"):
        load_dataset("digits", channels=0)


# ---- Fashion-MNIST, the data root, the per-process cache ----------------------------------------


@pytest.fixture
def no_system_copy(tmp_path, monkeypatch):
    """Debian's install (/usr/share/datasets/fashion-mnist) out of sight, no NORMTHEORY_DATA."""
    monkeypatch.setattr(normtheory.local_data, "_SYSTEM_ROOT", tmp_path / "system")
    monkeypatch.delenv("NORMTHEORY_DATA", raising=False)
    return tmp_path / "system"


@pytest.mark.parametrize("layout", ["fashion-mnist", "FashionMNIST/raw"])
@pytest.mark.parametrize("via", ["root", "env", "use_data_root"])
def test_fashion_mnist_round_trips_fake_idx_files(
    tmp_path, monkeypatch, no_system_copy, layout, via
):
    arrays = write_idx_set(tmp_path / "data" / layout, np.random.default_rng(3), n_train=7)
    x_tr = arrays["train-images-idx3-ubyte"][:, None] / 255.0  # (7, 1, 28, 28) float64
    x_te = arrays["t10k-images-idx3-ubyte"][:, None] / 255.0
    mean, std = x_tr.mean(), x_tr.std()  # the one channel's, population std
    root = str(tmp_path / "data")
    if via == "env":
        monkeypatch.setenv("NORMTHEORY_DATA", root)
    with use_data_root(root if via == "use_data_root" else None):
        train, test = load_dataset("fashion_mnist", **({"root": root} if via == "root" else {}))
    assert (train.name, train.in_shape, train.num_classes) == ("fashion_mnist", (1, 28, 28), 10)
    assert (len(train), len(test)) == (7, 4)
    np.testing.assert_allclose(train.inputs.numpy(), (x_tr - mean) / std, atol=1e-5)
    np.testing.assert_allclose(test.inputs.numpy(), (x_te - mean) / std, atol=1e-5)
    assert train.targets.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert test.targets.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_data_root_precedence_keyword_then_use_data_root_then_env_then_system(
    tmp_path, monkeypatch, no_system_copy
):
    """Each place holds a set of another size, so the size says which one was read."""
    for n, where in [(5, "kw"), (6, "ctx"), (7, "env"), (8, "system")]:
        write_idx_set(tmp_path / where / "fashion-mnist", np.random.default_rng(n), n_train=n)
    monkeypatch.setattr(normtheory.local_data, "_SYSTEM_ROOT", tmp_path / "system")

    def n_train(**kw):
        return len(load_dataset("fashion_mnist", **kw)[0])

    assert n_train() == 8 and data_root() is None
    monkeypatch.setenv("NORMTHEORY_DATA", str(tmp_path / "env"))
    assert n_train() == 7 and data_root() == str(tmp_path / "env")
    with use_data_root(tmp_path / "ctx"):
        assert n_train() == 6 and n_train(root=tmp_path / "kw") == 5
        with use_data_root(None):  # None changes nothing
            assert data_root() == str(tmp_path / "ctx")
    assert n_train() == 7  # restored on leaving the block
    monkeypatch.setenv("NORMTHEORY_DATA", str(tmp_path / "nothing-here"))
    assert n_train() == 8  # a data root without Fashion-MNIST: Debian's copy


def test_fashion_mnist_absent_says_which_package_to_install(tmp_path, no_system_copy):
    """MNIST's files at the top of the root or in MNIST/raw are never taken for Fashion-MNIST
    (same file names); the error is one line naming the package and the folder layout."""
    write_idx_set(tmp_path / "data", np.random.default_rng(0))
    write_idx_set(tmp_path / "data" / "MNIST" / "raw", np.random.default_rng(0))
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion_mnist", root=tmp_path / "data")
    message = str(err.value)
    assert len(message.splitlines()) == 1
    assert "apt-get install dataset-fashion-mnist" in message
    assert f"{tmp_path / 'data' / 'fashion-mnist'}, " in message  # where it looked
    assert str(no_system_copy / "fashion-mnist") in message
    for text in ("<root>/fashion-mnist/", "t10k-labels-idx1-ubyte", "--data-root", "downloads"):
        assert text in message
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist")  # no root at all


def test_fashion_mnist_incomplete_folder_names_the_missing_file(tmp_path, no_system_copy):
    folder = tmp_path / "fashion-mnist"
    write_idx_set(folder, np.random.default_rng(0), gz=())
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=f"missing t10k-labels-idx1-ubyte .* in {folder}"):
        load_dataset("fashion_mnist", root=tmp_path)


def test_idx_labels_must_match_the_images(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    arrays = write_idx_set(folder, np.random.default_rng(0), gz=())
    labels = arrays["t10k-labels-idx1-ubyte"][:3]
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx(0x0801, labels.shape, labels))
    with pytest.raises(ValueError, match="holds 4 images but .*t10k-labels-idx1-ubyte 3 labels"):
        load_dataset("mnist", root=tmp_path)


def test_check_dataset_finds_files_without_reading_them(tmp_path, no_system_copy):
    check_dataset("digits")  # nothing to find
    with pytest.raises(FileNotFoundError, match="cifar10: no data folder given"):
        check_dataset("cifar10")
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        check_dataset("fashion_mnist", root=tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, np.random.default_rng(0))
    (folder / "data_batch_1").write_bytes(b"not a pickle")
    with use_data_root(tmp_path):
        check_dataset("cifar10")  # found (it would fail to load: files are not read)
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; known datasets: cifar10"):
        check_dataset("svhn")


def test_files_are_decoded_once_per_process_and_again_when_changed(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    write_idx_set(folder, np.random.default_rng(0))
    normtheory.local_data._decode.cache_clear()  # (so the counts below are this test's)
    first, _ = load_dataset("mnist", root=tmp_path)
    again, _ = load_dataset("mnist", root=tmp_path, max_train=3)
    info = normtheory.local_data._decode.cache_info()
    assert (info.misses, info.hits) == (4, 4)  # the four files, read once
    first.inputs.add_(1.0)  # what a caller does to its copy never reaches the cache
    assert not torch.equal(load_dataset("mnist", root=tmp_path)[0].inputs, first.inputs)
    old = first.targets.tolist()
    new = write_idx_set(folder, np.random.default_rng(1))  # same names and sizes, new values
    assert new["train-labels-idx1-ubyte"].tolist() != old
    changed, _ = load_dataset("mnist", root=tmp_path)
    assert changed.targets.tolist() == new["train-labels-idx1-ubyte"].tolist()


def test_cifar10_targets_are_the_callers_own(tmp_path):
    """The decoded labels are cached read-only; the datasets get copies they may change."""
    write_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(0))
    train, test = load_dataset("cifar10", root=tmp_path)
    expected = test.targets.clone()
    test.targets.add_(1)
    train.targets.add_(1)
    assert torch.equal(load_dataset("cifar10", root=tmp_path)[1].targets, expected)


def test_byte_standardization_is_the_float64_value_rounded_once():
    """Oracle: numpy in float64 on x / 255 with per-channel mean and population std, then one
    rounding to float32; ours uses exact integer sums and a table of the 256 levels."""
    rng = np.random.default_rng(0)
    x_tr = rng.integers(0, 256, (50, 3, 5, 4), dtype=np.uint8)
    x_te = rng.integers(0, 256, (7, 3, 5, 4), dtype=np.uint8)
    mean = (x_tr / 255.0).mean(axis=(0, 2, 3), keepdims=True)
    std = (x_tr / 255.0).std(axis=(0, 2, 3), keepdims=True)
    ours = normtheory.local_data._standardize_bytes(x_tr, x_te)
    for got, x in zip(ours, (x_tr, x_te)):
        assert got.dtype == np.float32 and got.shape == x.shape
        np.testing.assert_array_max_ulp(got, ((x / 255.0 - mean) / std).astype(np.float32), 1)


# ---- the real Fashion-MNIST (Debian's dataset-fashion-mnist), when installed --------------------

_FASHION = Path("/usr/share/datasets/fashion-mnist")
_ZALANDO_READER = Path("/usr/share/doc/dataset-fashion-mnist/utils/mnist_reader.py")


@pytest.mark.skipif(
    not (_FASHION / "train-images-idx3-ubyte.gz").is_file() or not _ZALANDO_READER.is_file(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_matches_zalandos_reader(monkeypatch):
    """Oracle: Zalando's own reader (utils/mnist_reader.py, shipped in the package's docs) and
    the published facts: 60000 + 10000 images, 6000 / 1000 per class, train pixel mean 0.2860
    and std 0.3530 (of x / 255)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mnist_reader", _ZALANDO_READER)
    reader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reader)
    monkeypatch.delenv("NORMTHEORY_DATA", raising=False)
    train, test = load_dataset("fashion_mnist")  # found by itself
    assert (train.in_shape, train.num_classes, len(train), len(test)) == (
        (1, 28, 28),
        10,
        60000,
        10000,
    )
    assert train.targets.bincount().tolist() == [6000] * 10
    assert test.targets.bincount().tolist() == [1000] * 10
    for ds, kind in [(train, "train"), (test, "t10k")]:
        images, labels = reader.load_mnist(str(_FASHION), kind=kind)  # (N, 784) uint8
        assert ds.targets.tolist() == labels.tolist()
        flat = ds.inputs.numpy().reshape(len(ds), 784)
        black, white = flat[images == 0][0], flat[images == 255][0]  # the values of 0 and 255
        std = 1.0 / (white - black)  # of x / 255: (1 - 0) / std = white - black
        mean = -black * std
        assert mean == pytest.approx(0.2860, abs=5e-5) and std == pytest.approx(0.3530, abs=5e-5)
        assert np.array_equal(np.rint((flat * std + mean) * 255).astype(np.uint8), images)
    small, _ = load_dataset("fashion_mnist", max_train=100, channels=3)
    assert small.inputs.shape == (100, 3, 28, 28)


def test_split_validation_is_a_stratified_seeded_partition():
    """Oracle: counting. Each class gives round(fraction · n_c) examples to validation, the two
    parts partition the training set (by row identity), keep its order, and the seed fixes them."""
    train, _ = load_dataset("digits")
    rest, val = split_validation(train, 0.2, seed=0)
    ids = {
        tuple(x.flatten().tolist()) + (int(y),): i for i, (x, y) in enumerate(zip(*train.tensors))
    }
    rest_ids = [ids[tuple(x.flatten().tolist()) + (int(y),)] for x, y in zip(*rest.tensors)]
    val_ids = [ids[tuple(x.flatten().tolist()) + (int(y),)] for x, y in zip(*val.tensors)]
    assert sorted(rest_ids + val_ids) == list(range(len(train)))  # a partition
    assert rest_ids == sorted(rest_ids) and val_ids == sorted(val_ids)  # original order
    counts = np.bincount(train.targets.numpy(), minlength=10)
    assert np.bincount(val.targets.numpy(), minlength=10).tolist() == [
        round(0.2 * c) for c in counts
    ]
    again = split_validation(train, 0.2, seed=0)[1]
    assert torch.equal(again.inputs, val.inputs)
    assert not torch.equal(split_validation(train, 0.2, seed=1)[1].inputs, val.inputs)
    assert (val.name, val.num_classes, val.in_shape) == (train.name, 10, train.in_shape)
    with pytest.raises(ValueError, match="fraction"):
        split_validation(train, 1.0)


def test_majority_tokens_and_their_most_frequent_class():
    """The synthetic sequence task: int64 ids in [0, V), the class the strictly most frequent
    token (checked by counting), deterministic in the seed, the vocabulary kept by splits."""
    train, test = load_dataset("majority", n_train=300, n_test=50, length=12, vocab_size=5)
    for ds, n in [(train, 300), (test, 50)]:
        assert ds.inputs.dtype == torch.int64 and ds.inputs.shape == (n, 12)
        assert (ds.in_shape, ds.num_classes, ds.vocab_size) == ((12,), 5, 5)
        assert ds.inputs.min() >= 0 and ds.inputs.max() < 5
        for x, y in zip(ds.inputs.tolist(), ds.targets.tolist()):
            counts = [x.count(t) for t in range(5)]
            assert counts[y] > max(c for t, c in enumerate(counts) if t != y)
    assert set(train.targets.tolist()) == set(range(5))
    again, _ = load_dataset("majority", n_train=300, n_test=50, length=12, vocab_size=5)
    assert torch.equal(again.inputs, train.inputs)
    other, _ = load_dataset("majority", seed=1, n_train=300, n_test=50, length=12, vocab_size=5)
    assert not torch.equal(other.inputs, train.inputs)
    kept, held = split_validation(train, 0.2)
    assert kept.vocab_size == held.vocab_size == 5 and kept.inputs.dtype == torch.int64
    with pytest.raises(ValueError, match="int64"):
        ArrayDataset(train.inputs.float(), train.targets, name="m", num_classes=5, vocab_size=5)
