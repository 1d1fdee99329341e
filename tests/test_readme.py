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
    for metric in ("outcome.data_acc", "grad_norm.l2", "orth.ratio", "scale_inv.effective_lr"):
        assert metric in out, metric
    assert "NaN" not in out


def test_ci_runs_the_readme_test_command():
    setup, tests = _blocks("bash")
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests.strip() in ci
    assert "torch==2.13.0" in setup and "torch==2.13.0" in ci
    assert "normtheory run batch_size --profile quick" in setup and "normtheory report" in setup
