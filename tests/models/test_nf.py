"""Normalizer-free ResNets (`normtheory.models.nf`, ``norm="nf"``): the β of every block from
the variance recursion, a block's forward against the formula on float64 loop-oracle weights,
signal propagation at initialization, and training at a learning rate where the plain net
without normalization diverges."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from model_cases import build
from torch import nn

from normtheory.experiment import TrainCell, run_train_cell
from normtheory.hooks import LossAccuracy
from normtheory.models.nf import ALPHA, NFBlock
from normtheory.norms import RELU_GAMMA

pytestmark = pytest.mark.usefixtures("one_thread")


def _expected_betas(blocks: int, alpha: float) -> list[float]:
    """β of each block in order: Var = 1 after the stem; + α² per block; a transition block (the
    first of stages 2 and 3) resets it to 1 + α² after itself."""
    out, var = [], 1.0
    for stage in (1, 2, 3):
        for b in range(blocks):
            out.append(math.sqrt(var))
            var = 1 + alpha**2 if (stage > 1 and b == 0) else var + alpha**2
    return out


@pytest.mark.parametrize("depth", [8, 14, 20])
def test_betas_follow_the_expected_variance(depth):
    model = build("resnet", norm="nf", depth=depth)
    blocks = [m for m in model.modules() if isinstance(m, NFBlock)]
    expected = _expected_betas((depth - 2) // 6, ALPHA)
    assert [b.beta for b in blocks] == pytest.approx(expected, rel=1e-12)
    assert [b.alpha for b in blocks] == [ALPHA] * len(blocks)
    assert all(b.skip_gain.item() == 0.0 for b in blocks)  # SkipInit
    assert not any("norm" in n for n, _ in model.named_modules())


def _swsc(weight, gain, gamma, eps):
    """Scaled-WS weight, row by row on Python floats."""
    rows = weight.detach().reshape(weight.shape[0], -1).tolist()
    out = []
    for row, g in zip(rows, gain.detach().tolist()):
        n, mean = len(row), math.fsum(row) / len(row)
        var = math.fsum((w - mean) ** 2 for w in row) / n
        out.append([g * gamma * (w - mean) / math.sqrt(n * var + eps) for w in row])
    return torch.tensor(out, dtype=torch.float64).reshape(weight.shape)


@pytest.mark.parametrize("stride", [1, 2])
def test_block_forward_is_the_nf_formula(stride):
    """h + α s conv2(relu(conv1(relu(h/β)))); the transition shortcut conv sees relu(h/β)."""
    torch.manual_seed(0)
    c_out = 4 if stride == 1 else 6
    block = NFBlock(4, c_out, stride, kind="conv2d", alpha=0.3, beta=1.7, binary=False).double()
    with torch.no_grad():
        block.skip_gain.fill_(0.8)
        for m in block.modules():
            if hasattr(m, "gain"):
                m.gain.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    h = torch.randn(3, 4, 6, 6, dtype=torch.float64)

    def conv(m, x, **kw):
        return F.conv2d(x, _swsc(m.weight, m.gain, RELU_GAMMA, m.ws_eps), m.bias, **kw)

    x = torch.relu(h / 1.7)
    branch = conv(block.conv2, torch.relu(conv(block.conv1, x, stride=stride, padding=1)),
                  padding=1)  # fmt: skip
    skip = h if stride == 1 else conv(block.shortcut, x, stride=stride)
    torch.testing.assert_close(block(h), skip + 0.3 * 0.8 * branch, rtol=1e-10, atol=1e-12)


def test_signal_propagation_follows_the_expected_variance():
    """With every skip gain set to 1 (a block's full branch), the residual stream's variance
    after each block is close to the expected Var(h) of the recursion, and its channel means stay
    small: the scaled WS removes the ReLU's mean shift."""
    torch.manual_seed(0)
    model = build("resnet", (3, 16, 16), "nf", depth=20, width=32).double()
    for m in model.modules():
        if isinstance(m, NFBlock):
            m.skip_gain.data.fill_(1.0)
    seen = []
    for m in model.modules():
        if isinstance(m, NFBlock):
            m.register_forward_hook(lambda mod, i, o: seen.append((mod, o.detach())))
    with torch.no_grad():
        model(torch.randn(64, 3, 16, 16, dtype=torch.float64))
    for k, (block, out) in enumerate(seen):
        nxt = seen[k + 1][0].beta ** 2 if k + 1 < len(seen) else block.beta**2 + ALPHA**2
        assert out.var().item() == pytest.approx(nxt, rel=0.35), k
        assert out.mean(dim=(0, 2, 3)).abs().max().item() < 0.5 * math.sqrt(nxt), k


def test_nf_resnet_refuses_what_it_does_not_have():
    for kw in (dict(dropout_keep=0.5), dict(residual=False)):
        with pytest.raises(ValueError, match="nf resnet"):
            build("resnet", norm="nf", **kw)
    for kw in (dict(norm="nf+ws"), dict(norm="nf", weight_std=True)):
        with pytest.raises(ValueError, match="drop \\+ws"):
            build("resnet", **kw)


def test_nf_with_agc_trains_where_the_plain_net_without_norm_diverges():
    """The issue's requirement, on a tiny problem (512 digits, 80 SGD steps with momentum 0.9,
    batch 64, LR 3): the ResNet without any norm layer diverges within a few steps, and so does
    the NF-ResNet without AGC; the NF-ResNet with AGC (λ = 0.01) trains (no norm layer in it)."""
    base = TrainCell(dataset="digits", arch="resnet", width=8, depth=8, max_train=512,
                     steps=80, batch_size=64, momentum=0.9, lr=3.0)  # fmt: skip

    def run(**kw):
        result = run_train_cell(replace(base, **kw), 0, device="cpu", hooks=[LossAccuracy()])
        loss = result.records.query("metric == @LossAccuracy.TRAIN_LOSS")["value"]
        return result, loss.to_numpy()

    plain, _ = run(norm="none")
    assert plain.status == "diverged"
    no_agc, _ = run(norm="nf")
    assert no_agc.status == "diverged"
    nf, loss = run(norm="nf", agc=0.01)
    assert nf.status == "completed" and loss[-10:].mean() < 0.5 * math.log(10)
    model = build("resnet", norm="nf")
    assert not any(isinstance(m, nn.modules.batchnorm._NormBase) for m in model.modules())
