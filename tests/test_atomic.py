"""`normtheory.atomic`: a write replaces the file whole or not at all. A write that fails at any
point (while writing, at fsync, at the rename) leaves the old file byte-identical and no temp
file behind; a successful one leaves exactly the new bytes."""

import json
import os

import pytest

from normtheory.atomic import atomic_write_bytes, atomic_write_json


def _explode(*a, **k):
    raise OSError("disk full")


class _Interrupted(BaseException):
    """Stands for Ctrl-C (KeyboardInterrupt) or a SystemExit in the middle of a write."""


def _interrupt(*a, **k):
    raise _Interrupted


@pytest.mark.parametrize(
    "target,error",
    [("os.replace", _explode), ("os.fsync", _explode), ("os.replace", _interrupt)],
    ids=["rename-fails", "fsync-fails", "interrupted"],
)
def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, target, error):
    path = tmp_path / "f.json"
    atomic_write_bytes(path, b"old")
    monkeypatch.setattr(target, error)
    with pytest.raises((OSError, _Interrupted)):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_failed_write_while_writing_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    atomic_write_bytes(path, b"old")
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[:1])
            raise OSError("no space left on device")

    monkeypatch.setattr("os.fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="no space"):
        atomic_write_bytes(path, b"new content")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_write_replaces_the_file_and_makes_missing_folders(tmp_path):
    path = tmp_path / "a" / "b" / "f.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]


def test_the_temp_file_is_a_hidden_sibling_the_results_reader_skips(tmp_path, monkeypatch):
    """The temp file lives in the same folder (so the rename is atomic) as ``.<name>.*.tmp``."""
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((os.path.dirname(src), os.path.basename(src), dst))
        real_replace(src, dst)

    monkeypatch.setattr("os.replace", spy)
    path = tmp_path / "record.json"
    atomic_write_bytes(path, b"x")
    ((folder, name, dst),) = seen
    assert folder == str(tmp_path) and dst == path
    assert name.startswith(".record.json.") and name.endswith(".tmp")


def test_json_is_sorted_indented_and_newline_terminated(tmp_path):
    path = tmp_path / "m.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2], "p": tmp_path})
    text = path.read_text()
    assert text.endswith("}\n") and text.index('"a"') < text.index('"b"')
    assert json.loads(text) == {"a": [1, 2], "b": 1, "p": str(tmp_path)}  # default=str
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
