"""`Monitor` as a context manager and `monitor.step(...)`: the same records as the explicit calls."""

import pytest
import torch
import torch.nn.functional as F

from normtheory.hooks import (
    GradNorm,
    HessianSpectrum,
    LossAccuracy,
    MemorySink,
    Monitor,
    OrthogonalWeightNorm,
    Smoothness,
)
from normtheory.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 6


def _hooks():
    return [
        LossAccuracy(every=2),
        GradNorm(every=2),
        OrthogonalWeightNorm(every=3),
        HessianSpectrum(k=1, every=3, at_end=True),
        Smoothness(every=5, n_points=3),
    ]


def _setup():
    torch.manual_seed(0)
    model = build_model("mlp", norm="batch", in_shape=(4,), num_classes=3, width=8, depth=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    gen = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(STEPS):
        x = torch.randn(16, 4, generator=gen)
        x[:, 3] = 0  # the first layer's inputs span 3 of 4 dimensions: orth.ratio is recorded
        batches.append((x, torch.randint(3, (16,), generator=gen)))
    return model, opt, sched, batches


def _explicit():
    """The oracle: the events called one by one, as the Monitor's docstring shows."""
    model, opt, sched, batches = _setup()
    monitor = Monitor(model, _hooks(), optimizer=opt)
    monitor.start()
    for step, (x, y) in enumerate(batches[:STEPS]):
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        lr = opt.param_groups[0]["lr"]
        kw = {"inputs": x, "targets": y, "outputs": out, "loss": loss.detach(), "lr": lr}
        monitor.after_backward(step, **kw)
        opt.step()
        sched.step()  # moves the lr: after_step must still get the step's own
        monitor.after_step(step, **kw)
    monitor.end(STEPS)
    monitor.close()
    return monitor.frame(), model


def _with_context():
    model, opt, sched, batches = _setup()
    with Monitor(model, _hooks(), optimizer=opt) as monitor:
        for step, (x, y) in enumerate(batches[:STEPS]):
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            with monitor.step(step, batch=(x, y), loss=loss, outputs=out):
                opt.step()
                sched.step()
    return monitor.frame(), model


def test_context_manager_records_what_the_explicit_calls_record():
    expected, model_a = _explicit()
    got, model_b = _with_context()
    assert len(expected) > 40 and {"smoothness.beta", "orth.ratio"} <= set(expected.metric)
    assert expected.equals(got)
    assert all(
        torch.equal(p, q)
        for p, q in zip(model_a.state_dict().values(), model_b.state_dict().values())
    )
    assert got[got.metric == "hessian.eig"].step.tolist() == [0, 3, STEPS]  # end at steps taken


def test_a_failed_step_fires_no_after_step_and_the_sinks_are_closed(tmp_path):
    model, opt, _, batches = _setup()
    closed = []

    class Recording(MemorySink):
        def close(self):
            closed.append(len(self.rows))

    sink = Recording()
    monitor = Monitor(model, [GradNorm(), LossAccuracy()], sinks=[sink])
    with pytest.raises(RuntimeError, match="boom"), monitor:
        for step, (x, y) in enumerate(batches[:3]):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            with monitor.step(step, batch=(x, y), loss=loss):
                if step == 2:
                    raise RuntimeError("boom")
                opt.step()
    frame = sink.frame()
    assert frame[frame.metric == "outcome.train_loss"].step.tolist() == [0, 1]  # not 2
    assert frame[frame.metric == "grad_norm.l2"].step.max() == 2  # after_backward did fire
    assert closed == [len(sink.rows)]  # closed once, with every row; no end event


def test_step_takes_a_tensor_or_a_tuple_batch_and_refuses_a_dict():
    model, opt, _, batches = _setup()
    x, y = batches[0]
    monitor = Monitor(model, [LossAccuracy()])
    with monitor.step(0, batch=x, loss=torch.tensor(1.0)):
        pass
    with monitor.step(1, batch=[x, y, "extra"], outputs=model(x).detach()):
        pass
    frame = monitor.frame()
    assert frame.metric.tolist() == ["outcome.train_loss", "outcome.train_acc"]
    with (
        pytest.raises(TypeError, match="pass inputs= and targets="),
        monitor.step(2, batch={"x": x}),
    ):
        pass


def test_frame_pivot_gives_one_column_per_metric_and_key():
    frame, _ = _with_context()
    monitor = Monitor(torch.nn.Linear(1, 1), sinks=[sink := MemorySink()])
    sink.write(frame.itertuples(index=False, name=None))
    wide = monitor.frame(pivot=True)
    assert wide.index.name == "step" and wide.index.is_monotonic_increasing
    for row in frame.itertuples():
        column = f"{row.metric}/{row.key}" if row.key else row.metric
        assert wide.loc[row.step, column] == row.value
    assert wide.notna().sum().sum() == len(frame.drop_duplicates(["step", "metric", "key"]))
