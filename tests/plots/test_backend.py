"""Importing the library or any study picks no matplotlib backend: a notebook or a GUI keeps
its own; the CLI and the report choose Agg when they draw (regression: `normtheory.report.figures`
called ``matplotlib.use("Agg")`` at import, and every study imported it)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import importlib, pkgutil
    import matplotlib
    import matplotlib.pyplot as plt

    calls = []
    matplotlib.use = lambda *a, **k: calls.append(("use", a))
    plt.switch_backend = lambda *a, **k: calls.append(("switch_backend", a))
    before = dict.__getitem__(matplotlib.rcParams, "backend")

    import normtheory.plots, normtheory.analysis, normtheory.report, normtheory.cli
    import studies
    names = [m.name for m in pkgutil.iter_modules(studies.__path__)]
    for name in names:
        importlib.import_module(f"studies.{name}")
    after = dict.__getitem__(matplotlib.rcParams, "backend")
    assert len(names) > 5, names
    assert not calls, calls
    assert after is before or after == before, (before, after)
    print("ok", len(names))
    """
)


def test_importing_library_and_studies_sets_no_backend():
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


CHOOSERS = textwrap.dedent(
    """
    import tempfile
    import matplotlib

    from normtheory.cli import main
    from normtheory.report import build_report
    from normtheory.results import ResultsError

    matplotlib.use("svg")
    assert main(["list"]) == 0
    cli = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        build_report([], tempfile.mkdtemp())
    except ResultsError:  # no runs: the backend is chosen before anything is read
        pass
    print(cli.lower(), matplotlib.get_backend().lower())
    """
)


def test_the_cli_and_the_report_choose_agg():
    """The backend is chosen where figures are written: `normtheory.cli.main` and
    `normtheory.report.build_report` (here over a non-default backend set before)."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", CHOOSERS], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["agg", "agg"]
