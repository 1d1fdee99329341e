"""`normtheory.provenance`: ``git_commit`` in a throw-away git repository (clean, a changed tracked
file, an untracked file, no repository at all), ``now`` as UTC ISO seconds, ``versions`` naming
Python and the packages results depend on."""

import platform
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from importlib import metadata

import pytest

from normtheory.provenance import git_commit, now, versions

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def _git(repo, *args) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def repo(tmp_path):
    """A repository with one commit of one file."""
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one\n")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


@needs_git
def test_clean_tree_gives_the_head_commit(repo):
    head = _git(repo, "rev-parse", "HEAD")
    assert len(head) == 40 and git_commit(repo) == head


@needs_git
def test_a_changed_tracked_file_marks_the_commit_dirty(repo):
    head = _git(repo, "rev-parse", "HEAD")
    (repo / "a.txt").write_text("two\n")
    assert git_commit(repo) == head + "+dirty"
    _git(repo, "add", "a.txt")  # staged but not committed: still not the commit's tree
    assert git_commit(repo) == head + "+dirty"
    _git(repo, "commit", "-q", "-m", "second")
    assert git_commit(repo) == _git(repo, "rev-parse", "HEAD") != head


@needs_git
def test_an_untracked_file_does_not_make_it_dirty(repo):
    """Untracked files (a run folder, a report) do not change the code that ran."""
    (repo / "runs").mkdir()
    (repo / "runs" / "x.parquet").write_bytes(b"\x00")
    assert not git_commit(repo).endswith("+dirty")


@needs_git
def test_a_subfolder_of_the_repository_names_its_commit(repo):
    (repo / "pkg").mkdir()
    assert git_commit(repo / "pkg") == _git(repo, "rev-parse", "HEAD")


@needs_git
def test_outside_a_repository_or_without_commits_it_is_unknown(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / ".git").write_text("gitdir: /nowhere\n")  # stops git looking in the parents
    assert git_commit(plain) == "unknown"
    empty = tmp_path / "empty"
    empty.mkdir()
    _git(empty, "init", "-q")
    assert git_commit(empty) == "unknown"  # no HEAD yet


def test_without_git_installed_it_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable on the path
    assert git_commit(tmp_path) == "unknown"


def test_now_is_utc_iso_to_the_second():
    stamp = now()
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0) and parsed.microsecond == 0
    assert stamp.endswith("+00:00") and "." not in stamp
    assert abs(datetime.now(timezone.utc) - parsed) < timedelta(seconds=5)


def test_versions_name_python_the_platform_and_each_package():
    got = versions()
    assert got["python"] == platform.python_version() and got["platform"]
    assert got["torch"] == metadata.version("torch")
    assert got["numpy"] == metadata.version("numpy")
    for pkg in ("scipy", "pandas", "scikit-learn", "pyhessian"):
        assert pkg in got and got[pkg]
    for pkg, version in got.items():
        if pkg not in ("python", "platform") and version != "not installed":
            assert version == metadata.version(pkg)
