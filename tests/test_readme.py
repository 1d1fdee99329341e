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
    code, _ = _blocks("python")
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
    # top level only: reference/runs is committed
    assert "/runs/" in ignored and "/reports/" in ignored
    regenerate = next(b for b in _blocks("sh") if "verify" in b)
    assert regenerate.strip().endswith("--out reference")
    assert (ROOT / "reference" / "README.md").exists()


def test_write_your_own_study_runs_as_written(tmp_path, monkeypatch):
    """The README's own study, saved as it says and run with its commands, gives a report with
    its claim judged from that run and its figure."""
    import shlex

    import pandas as pd

    from normtheory.cli import main

    _, code = _blocks("python")
    (commands,) = [b for b in _blocks("sh") if "my_ghost.py" in b]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_ghost.py").write_text(code)
    for command in commands.strip().split(" && "):
        argv = shlex.split(command)
        assert argv[0] == "normtheory"
        assert main(argv[1:]) == 0, command
    claims = pd.read_csv("my-report/results/claims.csv", keep_default_na=False).set_index("claim")
    assert claims.loc["GHOST-REG", "run"] == "my_ghost-demo"
    assert claims.loc["GHOST-REG", "verdict"] not in ("not run", "not testable at this scale")
    rows = pd.read_csv("my-report/results/rows.csv", keep_default_na=False)
    (gain,) = rows[(rows["claim"] == "GHOST-REG") & (rows["name"] == "acc_gain")].itertuples()
    assert gain.n_seeds == 3 and str(gain.condition) == "64" and "underpowered" in gain.label
    assert (tmp_path / "my-report" / "figures" / "my_ghost-demo-accuracy.png").exists()
