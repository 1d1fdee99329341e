"""IC-SIGN: per-sample weight gradients in train-mode BN against a naive float64 backward loop,
and the same-sign fractions of their rows against hand counts and the ReLU argument."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from normtheory.data import load_dataset
from normtheory.measure.gradient_sign import (
    gradient_sign,
    per_sample_gradients,
    row_sign_fractions,
)
from normtheory.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _net(placement="norm_act", keep=1.0, n=12, dtype=torch.float64, width=4):
    train_set, _ = load_dataset("digits", max_train=64)
    torch.manual_seed(0)
    model = build_model(
        "convnet",
        norm="batch",
        in_shape=train_set.in_shape,
        num_classes=10,
        width=width,
        depth=2,
        placement=placement,
        dropout_keep=keep,
    ).to(dtype)
    x, y = train_set.tensors[0][:n].to(dtype), train_set.tensors[1][:n]
    return model, x, y


def _naive(model, x, y, names, seed):
    """Per example i: zero the grads, a fresh train-mode forward of the whole batch (same
    dropout masks: the RNG reseeded), backward of ℓ_i alone, read W.grad."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    rows = {n: [] for n in names}
    for i in range(len(x)):
        model.zero_grad()
        torch.manual_seed(seed)
        F.cross_entropy(model(x), y, reduction="none")[i].backward()
        for n in names:
            rows[n].append(model.get_submodule(n).weight.grad.clone())
    model.load_state_dict(saved)  # the forwards updated the running statistics
    model.zero_grad(set_to_none=True)
    return {n: torch.stack(r) for n, r in rows.items()}


@pytest.mark.parametrize("placement,keep", [("norm_act", 1.0), ("act_norm", 1.0), ("ic", 0.5)])
def test_per_sample_gradients_match_a_naive_backward_loop(placement, keep):
    model, x, y = _net(placement, keep)
    names = ["conv1", "conv2", "head"]
    torch.manual_seed(7)
    fast = per_sample_gradients(model, x, y, chunk_size=5)
    want = _naive(model, x, y, names, seed=7)
    assert list(fast) == names
    for n in names:
        assert fast[n].shape == (len(x), *model.get_submodule(n).weight.shape)
        torch.testing.assert_close(fast[n], want[n], rtol=1e-9, atol=1e-12)
    # The batch statistics couple the examples: example i's loss moves with the others' inputs,
    # which a per-example (vmap) gradient would miss; the sum of the rows is the batch gradient.
    torch.manual_seed(7)
    model.zero_grad()
    F.cross_entropy(model(x), y, reduction="sum").backward()
    torch.testing.assert_close(fast["conv2"].sum(0), model.conv2.weight.grad)


def test_row_sign_fractions_by_hand():
    g = torch.tensor(
        [
            [[1.0, 2.0, 0.0, 3.0], [1.0, -1.0, 2.0, -3.0]],  # 1 (one-signed), 1/2
            [[0.0, 0.0, 0.0, 0.0], [-1.0, -2.0, 3.0, 0.0]],  # left out, 2/3
        ]
    )
    got = row_sign_fractions(g)
    assert got.same_sign == pytest.approx((1 + 1 / 2 + 2 / 3) / 3)
    assert got.one_signed == pytest.approx(1 / 3)
    assert got.rows == 3
    assert np.isnan(row_sign_fractions(torch.zeros(2, 3, 4)).same_sign)


def test_relu_fed_layer_without_bn_after_is_one_signed_and_bn_fed_is_not():
    """W→BN→ReLU: the head is fed by a pooled ReLU output and no BN follows it, so its rows
    δ_o x are one-signed: exactly 1.0. W→ReLU→BN: fed by zero-mean BN outputs, far less."""
    nets = {p: _net(p, n=64, dtype=torch.float32, width=16) for p in ("norm_act", "act_norm")}
    relu_fed = gradient_sign(*nets["norm_act"], layers=["head"])
    bn_fed = gradient_sign(*nets["act_norm"], layers=["head"])
    assert relu_fed["head"].same_sign == 1.0 and relu_fed["head"].one_signed == 1.0
    assert relu_fed["head"].rows == 64 * 10
    assert bn_fed["head"].same_sign < 0.7 and bn_fed["head"].one_signed < 0.05


def test_leaves_model_grad_buffers_rng_and_mode_alone():
    model, x, y = _net("ic", keep=0.5)
    model.eval()
    model.norm1.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    torch.manual_seed(3)
    per_sample_gradients(model, x, y)
    after = torch.rand(4)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(4))
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())
    assert [m.training for m in model.modules()] == modes


def test_bad_layers():
    model, x, y = _net()
    with pytest.raises(ValueError, match="weight layers: conv1, conv2, head"):
        per_sample_gradients(model, x, y, layers=["norm1"])
    with pytest.raises(ValueError, match="nope"):
        per_sample_gradients(model, x, y, layers=["nope"])


def test_dict_batches_with_a_per_example_model_loss():
    """A batch of any structure and ``loss_fn(model, batch) -> (N,)`` give the naive loop's
    per-sample gradients too (and the GradientSign hook takes them)."""
    from normtheory.batches import model_loss
    from normtheory.hooks import GradientSign

    model, x, y = _net()

    @model_loss
    def losses(model, batch):
        return F.cross_entropy(model(batch["pixels"]), batch["label"], reduction="none")

    batch = {"pixels": x, "label": y}
    torch.manual_seed(7)
    fast = per_sample_gradients(model, batch, None, loss_fn=losses)
    want = _naive(model, x, y, list(fast), seed=7)
    for n in fast:
        torch.testing.assert_close(fast[n], want[n], rtol=1e-9, atol=1e-12)
    hook = GradientSign(probe=batch, loss_fn=losses, layers=["conv2"])
    plain = GradientSign(probe=(x, y), layers=["conv2"])
    assert hook.measure(model) == plain.measure(model)
    with pytest.raises(ValueError, match="targets"):
        GradientSign(probe=batch)
