"""`normtheory.measure.outcomes` against closed forms and direct computation: `accuracy` and
`evaluate` (eval mode, batch-size weighted mean loss, state restored), inference example weighing
(Summers & Dinneen 2019; EX-WEIGH of ``CLAIMS.md``) and the train/eval discrepancy."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from normtheory.measure.outcomes import (
    accuracy,
    evaluate,
    example_weighing,
    train_eval_discrepancy,
)
from normtheory.norms import BatchNorm

pytestmark = pytest.mark.usefixtures("one_thread")


def test_accuracy_is_the_fraction_of_argmax_hits():
    outputs = torch.tensor([[0.1, 0.9], [2.0, -1.0], [0.3, 0.2], [0.0, 5.0]])
    assert accuracy(outputs, torch.tensor([1, 0, 1, 0])) == 0.5
    with pytest.raises(ValueError, match="outputs \\(N, K\\) and targets \\(N,\\)"):
        accuracy(outputs, torch.tensor([1, 0]))


def test_evaluate_is_the_eval_mode_mean_over_uneven_batches(trained_bn_convnet):
    """Batches of 7 over 30 examples: the loss is weighted by batch size, as one pass gives."""
    model, data = trained_bn_convnet
    x, y = data.inputs[:30], data.targets[:30]
    model.train()
    buffers = [b.clone() for b in model.buffers()]
    got = evaluate(model, TensorDataset(x, y), batch_size=7)
    assert model.training and all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert got["loss"] == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-5)
    assert got["acc"] == (out.argmax(1) == y).sum().item() / 30 and got["n"] == 30
    with pytest.raises(ValueError, match="empty dataset"):
        evaluate(model, TensorDataset(x[:0], y[:0]))


def test_example_weight_zero_is_standard_eval_and_restores(trained_bn_convnet):
    model, data = trained_bn_convnet
    x = data.inputs[:16]
    with torch.no_grad():
        plain = model(x)
        with example_weighing(model, 0.0):
            zero = model(x)
        with example_weighing(model, 0.5):
            half = model(x)
        after = model(x)
    assert torch.equal(plain, zero) and torch.equal(plain, after)
    assert not torch.allclose(plain, half)
    assert all(m.example_weight == 0.0 for m in model.modules() if isinstance(m, BatchNorm))


def test_example_weight_one_on_one_example_uses_its_own_statistics():
    """w = 1: each channel is normalized by the example's own mean and variance over space,
    as instance normalization does (then BN's γ, β)."""
    torch.manual_seed(0)
    bn = BatchNorm(3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([5.0, -2.0, 0.5]))
        bn.running_var.copy_(torch.tensor([9.0, 0.25, 4.0]))
        bn.weight.copy_(torch.tensor([1.5, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    model = nn.Sequential(bn).eval()
    x = torch.randn(1, 3, 4, 5, dtype=torch.float32) * 3 + 1
    with torch.no_grad(), example_weighing(model, 1.0):
        got = model(x)
    expected = F.instance_norm(x, eps=bn.eps) * bn.weight.view(1, 3, 1, 1) + bn.bias.view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_intermediate_example_weight_is_the_mixture_of_the_claim():
    """0 < w < 1: μ = (1 − w) μ_pop + w μ_i and σ² = (1 − w) σ²_pop + w σ²_i + w(1 − w)(μ_i −
    μ_pop)² (CLAIMS.md, EX-WEIGH), against a naive float64 loop over examples and channels."""
    torch.manual_seed(1)
    bn = BatchNorm(2).double()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.7, -1.0]))
        bn.running_var.copy_(torch.tensor([2.0, 0.5]))
        bn.weight.copy_(torch.tensor([1.2, -0.4]))
        bn.bias.copy_(torch.tensor([0.3, 0.0]))
    model = nn.Sequential(bn).eval()
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64) * 2 + 0.5
    w = 0.3
    with torch.no_grad(), example_weighing(model, w):
        got = model(x)
    expected = torch.empty_like(x)
    for i in range(3):
        for c in range(2):
            v = x[i, c]
            mu_i, var_i = v.mean(), v.var(unbiased=False)
            mu_p, var_p = bn.running_mean[c], bn.running_var[c]
            mu = (1 - w) * mu_p + w * mu_i
            var = (1 - w) * var_p + w * var_i + w * (1 - w) * (mu_i - mu_p) ** 2
            expected[i, c] = (v - mu) / torch.sqrt(var + bn.eps) * bn.weight[c] + bn.bias[c]
    torch.testing.assert_close(got, expected)


def test_example_weighing_errors():
    bad = pytest.raises(ValueError, match="example weight must be a float in \\[0, 1\\], got 2")
    with bad, example_weighing(nn.Sequential(BatchNorm(2)), 2):
        pass
    with (
        pytest.raises(ValueError, match="has none"),
        example_weighing(nn.Sequential(nn.Linear(2, 2)), 0.5),
    ):
        pass


def _buffers(model):
    return {name: b.clone() for name, b in model.named_buffers()}


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_train_eval_discrepancy_eval_pass_sees_the_running_stats_from_before_the_call(
    trained_bn_convnet, weight
):
    """Regression (EX-WEIGH, issue 15): `train_eval_discrepancy` ran its train-mode pass first,
    which updated the running statistics, and then its eval-mode pass with those updated
    statistics, so the eval output was measured against population statistics already pulled
    towards the batch (output gap 0.334 instead of 0.363 at B = 8, seed 0); `preserved` only put
    them back afterwards. The old test's oracle repeated the same train-then-eval sequence.

    Independent oracle: two deep copies in float64, copy A running only the eval-mode forward
    (its running statistics untouched), copy B only the train-mode forward; the gaps by hand from
    those two outputs. The model's buffers (running_mean/var, num_batches_tracked) must be
    bit-identical after the call, and its mode kept."""
    model = copy.deepcopy(trained_bn_convnet[0]).double().eval()
    data = trained_bn_convnet[1]
    x, y = data.inputs[:8].double(), data.targets[:8]
    before = _buffers(model)
    with example_weighing(model, weight):
        got = train_eval_discrepancy(model, x, y)
    after = _buffers(model)
    assert before.keys() == after.keys() and any("num_batches_tracked" in k for k in after)
    assert all(torch.equal(before[k], after[k]) for k in before) and not model.training

    eval_copy, train_copy = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad(), example_weighing(eval_copy, weight):
        out_eval = eval_copy.eval()(x)  # (B, K), population statistics as before the call
    with torch.no_grad():
        out_train = train_copy.train()(x)  # (B, K), batch statistics
    train_loss = F.cross_entropy(out_train, y).item()
    eval_loss = F.cross_entropy(out_eval, y).item()
    output_gap = float((out_train - out_eval).norm() / out_eval.norm())
    assert got["train_loss"] == pytest.approx(train_loss, rel=0, abs=1e-12)
    assert got["eval_loss"] == pytest.approx(eval_loss, rel=0, abs=1e-12)
    assert got["loss_gap"] == pytest.approx(eval_loss - train_loss, rel=0, abs=1e-12)
    assert got["output_gap"] == pytest.approx(output_gap, rel=0, abs=1e-12)


class _Pairs(torch.utils.data.Dataset):
    """A plain map-style Dataset of (x, y) pairs (no ``.tensors``)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_evaluate_takes_a_tuple_a_dataset_or_a_loader_alike(trained_bn_convnet):
    model, data = trained_bn_convnet
    x, y = data.inputs[:30], data.targets[:30]
    want = evaluate(model, TensorDataset(x, y))
    rng = torch.get_rng_state()
    for kind in ((x, y), [x, y], _Pairs(x, y), torch.utils.data.DataLoader(_Pairs(x, y), 8)):
        got = evaluate(model, kind, batch_size=7)
        assert got["n"] == 30 and got["acc"] == want["acc"], type(kind)
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)
    assert torch.equal(torch.get_rng_state(), rng)  # a DataLoader's seed draw is undone
    with pytest.raises(TypeError, match="must be \\(inputs, targets\\) tensors.*got dict"):
        evaluate(model, {"x": x})
