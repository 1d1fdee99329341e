"""The lazy record path of `Monitor` (``flush_every``): the lazy hooks' 0-dim tensor values stay
on the device until a flush, and the frame and every sink's output are the same as with the
eager path (``flush_every=None``), row for row and float for float."""

import pytest
import torch
import torch.nn.functional as F

from normtheory.data import load_dataset
from normtheory.hooks import CSVSink, GradNorm, Hook, LossAccuracy, MemorySink, Monitor, WeightNorm
from normtheory.hooks.base import Deferred
from normtheory.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


class _Eager(Hook):
    """A non-lazy hook returning a plain float, interleaved with the lazy ones."""

    events = ("after_backward", "after_step")
    default_name = "eager"

    def on(self, event, ctx):
        return [("step_x2", event, 2.0 * ctx.step)]


def _run(flush_every, csv_path, steps=7):
    train_set, _ = load_dataset("digits", max_train=256, max_test=64)
    torch.manual_seed(0)
    model = build_model(
        "convnet", norm="batch", in_shape=train_set.in_shape, num_classes=10, width=8, depth=2
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hooks = [LossAccuracy(), GradNorm(), WeightNorm(every=2), _Eager()]
    monitor = Monitor(
        model,
        hooks,
        sinks=[MemorySink(), CSVSink(csv_path)],
        optimizer=opt,
        flush_every=flush_every,
    )
    monitor.start()
    outputs_seen = []
    for step in range(steps):
        x, y = (
            train_set.inputs[16 * step : 16 * step + 16],
            train_set.targets[16 * step : 16 * step + 16],
        )
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        monitor.after_backward(step, loss=loss.detach())
        opt.step()
        monitor.after_step(step, loss=loss.detach(), outputs=out, targets=y)
        outputs_seen.append((out.detach().clone(), y, loss.item()))
        if step == 4:
            monitor.eval(step + 1, {"test_loss": 0.5, "test_acc": 0.25})
    monitor.end(steps)
    monitor.close()
    return monitor.frame(), csv_path.read_bytes(), outputs_seen


def test_lazy_and_eager_paths_give_identical_frames_and_sink_output(tmp_path):
    eager, eager_csv, _ = _run(None, tmp_path / "eager.csv")
    for flush_every in (1, 3, 100):
        lazy, lazy_csv, _ = _run(flush_every, tmp_path / f"lazy{flush_every}.csv")
        assert lazy.equals(eager)  # same rows, same order, bit-identical floats
        assert lazy_csv == eager_csv
    assert eager["value"].map(type).eq(float).all()


def test_lazy_records_match_direct_computation(tmp_path):
    frame, _, seen = _run(3, tmp_path / "r.csv")
    acc = frame[frame.metric == LossAccuracy.TRAIN_ACC].set_index("step")["value"]
    loss = frame[frame.metric == LossAccuracy.TRAIN_LOSS].set_index("step")["value"]
    for step, (out, y, direct_loss) in enumerate(seen):
        correct = sum(
            int(max(range(10), key=lambda k, r=row: r[k])) == int(t)
            for row, t in zip(out.tolist(), y.tolist())
        )
        assert acc[step] == pytest.approx(correct / len(y), abs=1e-7)
        assert loss[step] == direct_loss


def test_lazy_monitor_keeps_records_until_a_flush():
    model = torch.nn.Linear(3, 2)
    sink = MemorySink()
    monitor = Monitor(model, [WeightNorm()], sinks=[sink], flush_every=4)
    monitor.start()
    for step in range(3):
        rows = monitor.after_step(step)
        assert isinstance(rows[0][3], Deferred)  # still on the device
    assert sink.rows == []  # start + steps 0..2: nothing sent yet
    monitor.after_step(3)  # the fourth step since the oldest pending row: drained
    assert len(sink.rows) == 5
    assert all(type(r[3]) is float for r in sink.rows)
    monitor.after_step(4)
    assert len(monitor.frame()) == 6  # frame() drains the pending row


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_flush_every_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="flush_every"):
        Monitor(torch.nn.Linear(2, 2), [], flush_every=bad)


def test_grad_norm_skips_parameters_without_gradient_and_mixed_dtypes_convert_exactly():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model[1].double()
    x = torch.randn(5, 3)
    model[0](x).sum().backward()  # model[1] takes no part: no .grad
    monitor = Monitor(model, [GradNorm()], flush_every=10)
    monitor.after_backward(0)
    frame = monitor.frame().set_index("key")["value"]
    assert set(frame.index) == {"0.weight", "0.bias", "total"}
    w, b = model[0].weight.grad, model[0].bias.grad
    assert frame["0.weight"] == float(w.norm()) and frame["0.bias"] == float(b.norm())
    assert frame["total"] == pytest.approx(
        (float(w.double().norm()) ** 2 + float(b.double().norm()) ** 2) ** 0.5, rel=1e-6
    )
    model[1](torch.randn(5, 4, dtype=torch.float64)).sum().backward()  # float32 and float64
    monitor.after_backward(1)
    rows = monitor.frame().query("step == 1").set_index("key")["value"]
    assert rows["1.weight"] == float(model[1].weight.grad.norm())
    assert rows["0.weight"] == float(w.norm())
