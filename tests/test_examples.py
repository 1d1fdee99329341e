"""The scripts in examples/ run as shown and do what they say."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_train_with_hooks_logs_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="the example's sink needs tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    script = EXAMPLES / "train_with_hooks.py"
    assert len(script.read_text().splitlines()) <= 80
    log_dir = tmp_path / "tb"
    proc = subprocess.run(
        [sys.executable, str(script), "--steps", "12", "--every", "4", "--log-dir", str(log_dir)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "outcome.data_acc" in proc.stdout and "grad_norm.l2" in proc.stdout
    events = EventAccumulator(str(log_dir)).Reload()
    tags = events.Tags()["scalars"]
    assert {"outcome.data_acc", "grad_norm.l2/total", "scale_inv.cosine/1.weight"} <= set(tags)
    assert [e.step for e in events.Scalars("grad_norm.l2/total")] == [0, 4, 8]


def _run_example(name, args, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _table(stdout):
    """The example's printed records: step -> {column: value}."""
    lines = [line.split() for line in stdout.splitlines() if line.strip()]
    at = lines.index(["step"])  # the index's name, under the columns' names
    header, rows = lines[at - 1], {}
    for parts in lines[at + 1 :]:
        if not parts[0].isdigit() or len(parts) != len(header) + 1:
            break
        rows[int(parts[0])] = dict(zip(header, map(float, parts[1:])))
    return rows


def test_lightning_example_measures_the_hessian_and_the_orthogonal_weight(tmp_path):
    pytest.importorskip("lightning", reason="the example needs lightning")
    out = _run_example(
        "lightning_hooks.py", ["--steps", "20", "--every", "10", "--plot", "fig.png"], tmp_path
    )
    rows = _table(out)
    assert sorted(rows) == [0, 10, 20]
    assert rows[0]["hessian.eig/1"] > 0 and rows[10]["hessian.eig/1"] > 0
    # SPAN-ORTH: the first layer's weight outside the span of the digits' pixels decays by
    # (1 - lr * wd) per plain SGD step, the gradient never reaches it
    assert [row["orth.updates"] for row in rows.values()] == [1, 11, 20]  # the t of each record
    for row in rows.values():
        assert row["orth.ratio/net.1"] == pytest.approx(
            (1 - 0.1 * 5e-3) ** row["orth.updates"], abs=2e-6
        )
    assert (tmp_path / "fig.png").stat().st_size > 10_000


def test_hf_trainer_example_measures_the_hessian_and_the_orthogonal_weight(tmp_path):
    pytest.importorskip("transformers", reason="the example needs transformers")
    pytest.importorskip("accelerate", reason="the Trainer needs accelerate")
    out = _run_example(
        "hf_trainer_hooks.py", ["--steps", "10", "--every", "5", "--plot", "fig.png"], tmp_path
    )
    rows = _table(out)
    assert sorted(rows) == [0, 5, 10]
    assert rows[0]["hessian.eig/1"] > 0 and rows[5]["hessian.eig/1"] > 0
    first = rows[0]
    assert first["orth.complement_dim/bert.pooler.dense"] == 16
    assert first["orth.ratio/bert.pooler.dense"] == pytest.approx(1 - 0.05 * 0.01, abs=1e-6)
    assert rows[10]["orth.updates"] == 10
    assert (tmp_path / "fig.png").stat().st_size > 10_000
