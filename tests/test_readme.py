"""The README's promises stay true: its hooks example runs, its commands match .ci/run."""

import re
from pathlib import Path

import pytest

# The example trains a small convnet: one torch thread, else a busy 2-core machine makes it
# several times slower (35–90 s instead of ~3 s).
pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_hooks_example_runs(capsys):
    (code,) = _blocks("python")
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    for metric in ("orth.ratio", "orth.complement_dim", "scale_inv.effective_lr", "test accuracy"):
        assert metric in out, metric
    assert "NaN" not in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    # conv1 sees 3 identical channels: a complement of 18 dims, shrunk by weight decay; the layers
    # after it see their whole input space: no ratio there (a ratio of rounding errors).
    complement, drift, norm, ratio = (float(v) for v in rows["conv1"][1:5])
    assert complement == 18 and 0 < ratio < 1
    assert rows["head"][1] == "0.0" and rows["head"][4] == "·"


def test_ci_runs_the_readme_test_command():
    setup, tests = _blocks("bash")
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests.strip() in ci
    assert "torch==2.13.0" in setup and "torch==2.13.0" in ci
    assert "normtheory run batch_size --profile quick" in setup and "normtheory report" in setup


def test_the_quick_start_leaves_the_committed_reference_alone():
    """A new user's first run writes into runs/ and reports/ (ignored by git); the reference
    report lives in reference/, regenerated only by the documented command."""
    from normtheory.cli import _parser

    setup, _ = _blocks("bash")
    assert "--out" not in setup
    assert _parser().parse_args(["report"]).out == "reports"
    assert _parser().parse_args(["verify"]).out == "reports"
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "runs/" in ignored and "reports/" in ignored
    (regenerate,) = _blocks("sh")
    assert regenerate.strip().endswith("--out reference")
    assert (ROOT / "reference" / "README.md").exists()
