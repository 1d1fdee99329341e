"""Monitor sinks: every sink receives exactly the rows the memory sink holds."""

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from normtheory.hooks import CSVSink, GradNorm, MemorySink, Monitor, ParquetSink, WeightNorm
from normtheory.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(sinks, steps=6):
    torch.manual_seed(0)
    model = build_model("mlp", norm="batch", in_shape=(4,), num_classes=3, width=8, depth=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = Monitor(model, [GradNorm(every=2), WeightNorm(every=3)], sinks=sinks)
    monitor.start()
    for step in range(steps):
        x, y = torch.randn(16, 4), torch.randint(3, (16,))
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        monitor.after_backward(step, loss=loss.detach())
        opt.step()
        monitor.after_step(step, loss=loss.detach())
    monitor.end(steps)
    return monitor


def test_default_sink_is_memory_and_frame_works():
    monitor = _run(None)
    assert len(monitor.sinks) == 1 and isinstance(monitor.sinks[0], MemorySink)
    frame = monitor.frame()
    assert list(frame.columns) == ["step", "metric", "key", "value"]
    assert set(frame.step) == {0, 2, 3, 4} and frame.value.notna().all()


def test_csv_and_parquet_hold_the_same_rows_as_memory(tmp_path):
    memory = MemorySink()
    csv, parquet = CSVSink(tmp_path / "a" / "r.csv"), ParquetSink(tmp_path / "r.parquet")
    monitor = _run([memory, csv, parquet])
    monitor.close()
    expected = memory.frame()
    from_csv = pd.read_csv(tmp_path / "a" / "r.csv", keep_default_na=False)
    from_parquet = pd.read_parquet(tmp_path / "r.parquet")
    for frame in (from_csv, from_parquet):
        assert list(frame.columns) == ["step", "metric", "key", "value"]
        assert frame.step.tolist() == expected.step.tolist()
        assert frame.metric.tolist() == expected.metric.tolist()
        assert frame.key.tolist() == expected.key.tolist()
    assert from_parquet.value.tolist() == expected.value.tolist()  # bit-exact
    assert from_csv.value.tolist() == pytest.approx(expected.value.tolist(), rel=1e-12)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_parquet_sink_file_is_complete_at_each_flush(tmp_path):
    sink = ParquetSink(tmp_path / "r.parquet")
    sink.write([(0, "m", "", 1.0)])
    sink.flush()
    assert len(pd.read_parquet(tmp_path / "r.parquet")) == 1
    sink.write([(1, "m", "", 2.0)])
    sink.close()
    assert pd.read_parquet(tmp_path / "r.parquet").value.tolist() == [1.0, 2.0]


def test_tensorboard_sink_writes_scalars(tmp_path):
    pytest.importorskip("tensorboard", reason="TensorBoardSink needs tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from normtheory.hooks import TensorBoardSink

    memory = MemorySink()
    monitor = _run([memory, TensorBoardSink(tmp_path / "tb")])
    monitor.close()
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    frame = memory.frame()
    total = frame[(frame.metric == "grad_norm.l2") & (frame.key == "total")]
    scalars = events.Scalars("grad_norm.l2/total")
    assert [s.step for s in scalars] == total.step.tolist()
    assert [s.value for s in scalars] == pytest.approx(total.value.tolist(), rel=1e-6)  # float32


def test_monitor_without_memory_sink_explains_frame(tmp_path):
    monitor = _run([CSVSink(tmp_path / "r.csv")], steps=2)
    with pytest.raises(ValueError, match="add MemorySink"):
        monitor.frame()


def test_pivot_records_known_answer():
    from normtheory.hooks import pivot_records

    tidy = pd.DataFrame(
        [
            (2, "b.x", "", 5.0),
            (0, "a.y", "conv1", 1.0),
            (0, "b.x", "", 2.0),
            (2, "a.y", "conv1", 3.0),
            (2, "a.y", "conv1", 4.0),  # recorded twice at step 2: the last value counts
            (1, "a.y", "head", 7.0),
        ],
        columns=["step", "metric", "key", "value"],
    )
    wide = pivot_records(tidy)
    nan = float("nan")
    expected = pd.DataFrame(
        {"b.x": [2.0, nan, 5.0], "a.y/conv1": [1.0, nan, 4.0], "a.y/head": [nan, 7.0, nan]},
        index=pd.Index([0, 1, 2], name="step"),
    )
    pd.testing.assert_frame_equal(wide, expected)
    assert tidy.value.tolist() == [5.0, 1.0, 2.0, 3.0, 4.0, 7.0]  # the input is left alone
    with pytest.raises(ValueError, match="extra columns"):
        pivot_records(tidy.assign(run="r"))


class _FakeRun:
    """A W&B run's interface as WandbSink uses it; `fail` makes log/define_metric raise."""

    def __init__(self, fail=False):
        self.logged, self.defined, self.fail, self.finished = [], {}, fail, False

    def define_metric(self, name, step_metric=None):
        if self.fail:
            raise ConnectionError("no network")
        self.defined[name] = step_metric

    def log(self, data):
        if self.fail:
            raise ConnectionError("no network")
        self.logged.append(dict(data))

    def finish(self):
        self.finished = True


def test_wandb_sink_logs_every_row_against_the_training_step():
    pytest.importorskip("wandb", reason="WandbSink needs wandb")
    from normtheory.hooks import WandbSink

    memory, run = MemorySink(), _FakeRun()
    monitor = _run([memory, WandbSink(run)])
    monitor.close()
    assert not run.finished  # a run given to the sink is the caller's to finish
    frame = memory.frame()
    got = [
        (entry["normtheory/step"], tag, value)
        for entry in run.logged
        for tag, value in entry.items()
        if tag != "normtheory/step"
    ]
    expected = [
        (step, f"{metric}/{key}" if key else metric, value)
        for step, metric, key, value in frame.itertuples(index=False)
    ]
    assert sorted(got) == sorted(expected)
    steps = [e["normtheory/step"] for e in run.logged]  # one log per step and write
    assert steps == sorted(steps) and set(steps) == set(frame.step)
    assert run.defined == {"normtheory/step": None, **{t: "normtheory/step" for _, t, _ in got}}


def test_wandb_sink_errors_never_stop_training():
    pytest.importorskip("wandb", reason="WandbSink needs wandb")
    from normtheory.hooks import WandbSink

    memory = MemorySink()
    with pytest.warns(RuntimeWarning, match="ConnectionError: no network") as caught:
        sink = WandbSink(_FakeRun(fail=True))
        monitor = _run([sink, memory], steps=6)  # training runs to its end
    monitor.close()
    assert len([w for w in caught if "WandbSink" in str(w.message)]) == 1  # reported once
    assert sink.errors > 5 and len(memory.frame()) == len(_run(None).frame())


def test_wandb_sink_offline_run(tmp_path, monkeypatch):
    """A real W&B run in offline mode (no network): the sink's calls are accepted, the run's
    summary holds each tag's last value, and the sink finishes the run it started."""
    pytest.importorskip("wandb", reason="WandbSink needs wandb")
    from normtheory.hooks import WandbSink

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    memory = MemorySink()
    sink = WandbSink(project="normtheory-test", dir=str(tmp_path))
    run = sink.run
    monitor = _run([memory, sink])
    summary = dict(run.summary)
    monitor.close()
    assert sink.errors == 0
    last = memory.frame().groupby(["metric", "key"]).value.last()
    for (metric, key), value in last.items():
        assert summary[f"{metric}/{key}" if key else metric] == pytest.approx(value, rel=1e-12)
    assert summary["normtheory/step"] == memory.frame().step.max()
    assert list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))  # the offline log exists
