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
