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
