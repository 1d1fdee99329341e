"""Provenance of stored results: the time, the git commit (``+dirty`` for a changed tree) and the
versions of Python and of the packages results depend on, written into every run's manifest."""

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

_PACKAGES = (
    "normtheory",
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "seaborn",
    "matplotlib",
    "statsmodels",
    "pyhessian",
)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit(cwd: Path | None = None) -> str:
    """The current git commit (with ``+dirty`` when the tree has changes), or ``unknown``."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the packages results depend on."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out
