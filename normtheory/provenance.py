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


def float_path() -> str:
    """The CPU code paths floating-point results take on this machine: the highest SIMD level
    numpy dispatches to and the core each BLAS library tuned itself for. The same versions give
    numbers that differ in the last bits on another path (numpy's AVX-512 exp/log and OpenBLAS's
    kernels round differently), so a byte-for-byte check needs the same path too."""
    import numpy  # noqa: F401  (loads numpy's and scipy's BLAS, so both are listed)
    import scipy.linalg  # noqa: F401

    parts = []
    try:
        from numpy._core import _multiarray_umath as umath  # where numpy keeps its CPU dispatch

        found = [t for t in umath.__cpu_dispatch__ if umath.__cpu_features__.get(t)]
        parts.append(f"numpy SIMD {found[-1] if found else 'baseline'}")
    except (ImportError, AttributeError):
        parts.append("numpy SIMD ?")
    try:
        from threadpoolctl import threadpool_info

        blas = sorted(
            {
                f"{i['internal_api']} {i.get('architecture') or '?'}"
                for i in threadpool_info()
                if i.get("user_api") == "blas"
            }
        )
        parts.append(", ".join(blas) or "no BLAS loaded")
    except ImportError:
        parts.append("BLAS ?")
    return f"{platform.machine()}, " + ", ".join(parts)
