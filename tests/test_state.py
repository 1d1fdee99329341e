"""`normtheory.state`: `preserved` puts back modes, buffers, ``.grad``, (optionally) parameters and
the RNG streams exactly, even when the body raises; `probe_forward` returns what forward hooks
see, at the first call only, and leaves the model as found.

The oracle is a full snapshot of everything a measurement could disturb, compared bit for bit;
each leak is first shown to change the snapshot without `preserved`, so the check can fail.
"""

import random

import numpy as np
import pytest
import torch

from normtheory.models import build_model
from normtheory.state import preserved, preserved_rng, probe_forward

pytestmark = pytest.mark.usefixtures("one_thread")


def _model():
    """BN (running statistics) and dropout (RNG) in the IC order; grads on some params only."""
    torch.manual_seed(0)
    model = build_model(
        "mlp", norm="batch", in_shape=(6,), num_classes=3, width=8, depth=2,
        placement="ic", dropout_keep=0.5,
    )  # fmt: skip
    x = torch.randn(16, 6)
    model.train()
    model(x).sum().backward()
    model.fc2.weight.grad = None  # a parameter without .grad must stay without one
    model.head.eval()  # a mixed train/eval state must survive too
    return model, x


def _snapshot(model) -> dict:
    """Everything a measurement could disturb, as copies."""
    return {
        "modes": [m.training for m in model.modules()],
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": (np.random.get_state()[1].copy(), np.random.get_state()[2]),  # key, pos
        "python_rng": random.getstate(),
    }


def _same(a: dict, b: dict) -> list[str]:
    """The names of the snapshot parts that differ (empty: bit-identical)."""
    diff = []
    if a["modes"] != b["modes"]:
        diff.append("modes")
    if a["state"].keys() != b["state"].keys() or not all(
        torch.equal(a["state"][k], b["state"][k]) for k in a["state"]
    ):
        diff.append("state")
    if [g is None for g in a["grads"]] != [g is None for g in b["grads"]] or not all(
        torch.equal(x, y) for x, y in zip(a["grads"], b["grads"]) if x is not None
    ):
        diff.append("grads")
    if not torch.equal(a["torch_rng"], b["torch_rng"]):
        diff.append("torch_rng")
    (key_a, pos_a), (key_b, pos_b) = a["numpy_rng"], b["numpy_rng"]
    if pos_a != pos_b or not np.array_equal(key_a, key_b):
        diff.append("numpy_rng")
    if a["python_rng"] != b["python_rng"]:
        diff.append("python_rng")
    return diff


def _train_forward(model, x):  # BN running statistics move, dropout draws from the torch RNG
    model.train()
    model(x)


def _backward(model, x):  # .grad accumulates, and a missing .grad appears
    model(x).sum().backward()


def _modes(model, x):
    model.eval()
    model.fc1.train()


def _rng_draws(model, x):
    torch.rand(3)
    np.random.rand(3)
    random.random()


def _weights(model, x):  # only restored with params=True
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)


def _grad_none(model, x):  # a measurement that clears .grad
    model.zero_grad(set_to_none=True)


LEAKS = {
    "train_forward": (_train_forward, {"state", "modes", "torch_rng"}),
    "backward": (_backward, {"grads", "state", "torch_rng"}),
    "modes": (_modes, {"modes"}),
    "rng_draws": (_rng_draws, {"torch_rng", "numpy_rng", "python_rng"}),
    "weights": (_weights, {"state"}),
    "grad_none": (_grad_none, {"grads"}),
}


@pytest.mark.parametrize("leak", list(LEAKS))
def test_each_leak_is_seen_without_preserved_and_undone_with_it(leak):
    fn, touched = LEAKS[leak]
    model, x = _model()
    before = _snapshot(model)
    fn(model, x)
    assert touched <= set(_same(before, _snapshot(model)))  # the oracle sees this leak
    model, x = _model()
    before = _snapshot(model)
    with preserved(model, params=True) as same:
        assert same is model
        fn(model, x)
    assert _same(before, _snapshot(model)) == []


def test_everything_at_once_and_restored_when_the_body_raises():
    model, x = _model()
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match="measurement failed"), preserved(model, params=True):
        for fn, _ in LEAKS.values():
            fn(model, x)
        raise RuntimeError("measurement failed")
    assert _same(before, _snapshot(model)) == []


def test_parameters_are_only_restored_when_asked():
    """Without ``params=True`` a weight changed in place stays changed (the copy is skipped on
    purpose: training code that updates weights inside `preserved` keeps its update)."""
    model, x = _model()
    before = _snapshot(model)
    with preserved(model):
        _weights(model, x)
    assert _same(before, _snapshot(model)) == ["state"]
    weight = before["state"]["fc1.weight"]
    assert torch.equal(model.fc1.weight.detach(), 2 * weight)
    assert torch.equal(model.norm1.running_mean, before["state"]["norm1.running_mean"])


def test_grads_are_restored_into_the_same_tensors():
    """An optimizer or a sink may hold the ``.grad`` tensor: it is copied back, not replaced."""
    model, x = _model()
    held = model.fc1.weight.grad
    saved = held.clone()
    with preserved(model):
        _backward(model, x)
    assert model.fc1.weight.grad is held and torch.equal(held, saved)


def test_preserved_rng_restores_every_stream():
    """The draws after the block are the draws the saved states give (the block's are undone)."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    with preserved_rng():
        torch.rand(2), np.random.rand(2), random.random()
    after = torch.rand(2), np.random.rand(2), random.random()
    torch.set_rng_state(states[0]), np.random.set_state(states[1]), random.setstate(states[2])
    expected = torch.rand(2), np.random.rand(2), random.random()
    assert torch.equal(after[0], expected[0]) and np.array_equal(after[1], expected[1])
    assert after[2] == expected[2]


def test_probe_forward_returns_what_forward_hooks_see():
    model, x = _model()
    before = _snapshot(model)
    got = probe_forward(model, x, {"fc1": model.fc1, "norm2": model.norm2}, train=False)
    assert _same(before, _snapshot(model)) == []
    # oracle: the same layers applied by hand in eval mode
    model.eval()
    with torch.no_grad():
        fc1 = model.fc1(x)
        norm2 = model.norm2(model.act2(model.fc2(model.drop1(model.norm1(model.act1(fc1))))))
    torch.testing.assert_close(got["fc1"], fc1, rtol=0, atol=0)
    torch.testing.assert_close(got["norm2"], norm2, rtol=0, atol=0)
    inputs = probe_forward(model, x, {"fc1": model.fc1}, side="input")
    assert torch.equal(inputs["fc1"], x)


def test_probe_forward_in_train_mode_uses_batch_statistics_and_keeps_running_ones():
    model, x = _model()
    before = _snapshot(model)
    got = probe_forward(model, x, {"norm1": model.norm1}, train=True)
    assert _same(before, _snapshot(model)) == []
    z = got["norm1"]  # BN output in train mode: per channel mean β and biased sd |γ|
    bn = model.norm1
    torch.testing.assert_close(z.mean(0), bn.bias.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0, correction=0), bn.weight.detach().abs(), atol=1e-3, rtol=0)


def test_probe_forward_keeps_the_first_call_of_a_module_called_twice():
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 3)
    model = torch.nn.Sequential(layer, torch.nn.ReLU(), layer)
    x = torch.randn(4, 3)
    got = probe_forward(model, x, {"layer": layer})
    torch.testing.assert_close(got["layer"], layer(x).detach(), rtol=0, atol=0)


def test_probe_forward_bad_side_is_refused():
    model, x = _model()
    with pytest.raises(ValueError, match="unknown side 'middle'; valid: input, output"):
        probe_forward(model, x, {"fc1": model.fc1}, side="middle")
