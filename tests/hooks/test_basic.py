"""`normtheory.hooks.basic`: `WeightNorm`, `GradNorm` and `LossAccuracy` record the numbers a
direct float64 (or plain forward) computation gives."""

import math

import pytest
import torch
import torch.nn.functional as F

from normtheory.data import load_dataset
from normtheory.hooks import GradNorm, LossAccuracy, Monitor, WeightNorm
from normtheory.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _setup(norm="batch"):
    train_set, test_set = load_dataset("digits", max_train=256, max_test=128)
    torch.manual_seed(0)
    model = build_model(
        "convnet", norm=norm, in_shape=train_set.in_shape, num_classes=10, width=8, depth=3
    )
    return model, train_set, test_set


@pytest.mark.parametrize("flush_every", [None, 2])
def test_weight_and_grad_norms_match_direct_computation(flush_every):
    model, train_set, _ = _setup(norm="none")
    x, y = train_set.inputs[:16], train_set.targets[:16]
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    monitor = Monitor(model, [WeightNorm(), GradNorm(name="g")], flush_every=flush_every)
    monitor.after_backward(0, loss=loss.detach())
    monitor.after_step(0, loss=loss.detach(), outputs=model(x), targets=y)
    frame = monitor.frame()
    w = frame[frame.metric == "weight_norm.l2"].set_index("key")["value"]
    g = frame[frame.metric == "g.l2"].set_index("key")["value"]
    for name, p in model.named_parameters():
        if p.ndim >= 2:
            assert w[name] == pytest.approx(
                math.sqrt(float((p.detach().double() ** 2).sum())), rel=1e-6
            )
        assert g[name] == pytest.approx(float(p.grad.double().norm()), rel=1e-6)
    total = math.sqrt(sum(float(p.grad.double().norm()) ** 2 for p in model.parameters()))
    assert g["total"] == pytest.approx(total, rel=1e-6)


def test_loss_accuracy_with_data_evaluates_like_direct_computation():
    model, train_set, test_set = _setup()
    monitor = Monitor(model, [LossAccuracy(data=test_set, every=5)])
    monitor.after_step(5)
    frame = monitor.frame().set_index("metric")["value"]
    model.eval()
    with torch.no_grad():
        out = model(test_set.inputs)
    assert frame["outcome.data_loss"] == pytest.approx(
        F.cross_entropy(out, test_set.targets).item(), rel=1e-5
    )
    assert frame["outcome.data_acc"] == pytest.approx(
        (out.argmax(1) == test_set.targets).float().mean().item()
    )


def test_loss_accuracy_takes_a_tuple_of_tensors_and_names_what_it_takes():
    model, _, test_set = _setup()
    pair = (test_set.inputs, test_set.targets)
    monitor = Monitor(model, [LossAccuracy(data=pair, every=5)])
    monitor.after_step(5)
    reference = Monitor(model, [LossAccuracy(data=test_set, every=5)])
    reference.after_step(5)
    assert monitor.frame().equals(reference.frame())
    with pytest.raises(TypeError, match="TensorDataset.*got ndarray"):
        LossAccuracy(data=test_set.inputs.numpy())
