"""`normtheory.measure.preconditioned` against independent oracles: a softmax head's Hessian in
closed form, (1/N) Σ_i (diag p_i − p_i p_iᵀ) ⊗ x̃_i x̃_iᵀ; BNP's transformed Hessian against the
Hessian of the loss written in the normalized coordinates (conv layer, kernel positions
included); the spectrum summary of a known matrix; the model left as it was."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normtheory.hooks import Context, LayerHessianBNP
from normtheory.measure.preconditioned import (
    bnp_transform,
    layer_hessian,
    layer_input_stats,
    spectrum_summary,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(2, 3, 3), nn.ReLU(), nn.BatchNorm1d(3), nn.Flatten(), nn.Linear(12, 4)
    ).double()


def _data(n=20):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 2, 6, generator=gen, dtype=torch.float64) + 0.5, torch.randint(
        0, 4, (n,), generator=gen
    )


def test_head_hessian_in_closed_form():
    net, (x, y) = _net().eval(), _data()
    h = layer_hessian(net, F.cross_entropy, x, y, "4")
    with torch.no_grad():
        feats = net[:4](x)  # (N, 12)
        p = torch.softmax(net[4](feats), dim=1)  # (N, 4)
    aug = torch.cat([feats, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)  # (N, 13)
    expected = sum(
        torch.kron(torch.diag(p[i]) - torch.outer(p[i], p[i]), torch.outer(aug[i], aug[i]))
        for i in range(len(x))
    ) / len(x)
    torch.testing.assert_close(h, expected, rtol=1e-10, atol=1e-12)
    s = spectrum_summary(h)
    rank = int(torch.linalg.matrix_rank(expected, rtol=1e-10))
    assert s.null == 52 - rank >= 13 and s.negative == 0  # ≥ 13: the shift of all class rows


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_bnp_hessian_is_the_hessian_in_normalized_coordinates(mode):
    """Oracle: the loss as a function of (Ŵ, b̂) of the conv, with W = Ŵ D⁻¹ (per input channel,
    every kernel position) and b = b̂ − Σ Ŵ μ / D, differentiated twice by torch.func."""
    net, (x, y) = _net(), _data()
    net.train(mode == "train")
    eps = 1e-3
    mean, var = layer_input_stats(net, x, "0", mode=mode)
    torch.testing.assert_close(mean, x.mean(dim=(0, 2)))
    torch.testing.assert_close(var, x.var(dim=(0, 2), correction=0))
    h = layer_hessian(net, F.cross_entropy, x, y, "0", mode=mode)
    found = bnp_transform(h, mean, var, out=3, kernel=3, eps=eps)
    d = torch.sqrt(var + eps)  # (2,)
    params = {n: p.detach() for n, p in net.named_parameters()}
    buffers = {n: b.clone() for n, b in net.named_buffers()}

    def loss(theta):  # rows [ŵ_o (2×3 row-major), b̂_o]
        r = theta.reshape(3, 7)
        w_hat = r[:, :6].reshape(3, 2, 3)
        w = w_hat / d[None, :, None]
        b = r[:, 6] - (w_hat * (mean / d)[None, :, None]).sum(dim=(1, 2))
        state = {**params, **buffers, "0.weight": w, "0.bias": b}
        return F.cross_entropy(torch.func.functional_call(net, state, (x,)), y)

    w0, b0 = net[0].weight.detach(), net[0].bias.detach()
    w_hat0 = w0 * d[None, :, None]
    b_hat0 = b0 + (w0 * mean[None, :, None]).sum(dim=(1, 2))
    theta = torch.cat([w_hat0.reshape(3, 6), b_hat0[:, None]], dim=1).reshape(-1)
    expected = torch.autograd.functional.hessian(loss, theta)
    torch.testing.assert_close(found, expected, rtol=1e-8, atol=1e-10)


def test_spectrum_summary_by_hand():
    q = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))[0]
    h = q @ torch.diag(torch.tensor([4.0, 2.0, 0.5, 0.0, -1e-14], dtype=torch.float64)) @ q.T
    s = spectrum_summary(h)
    assert (s.top, s.bottom, s.cond, s.null, s.negative) == pytest.approx((4.0, 0.5, 8.0, 2, 0))
    s = spectrum_summary(torch.diag(torch.tensor([3.0, -1.0, 1.0], dtype=torch.float64)))
    assert (s.bottom, s.negative) == (1.0, 1)


def test_the_hook_leaves_the_model_as_it_was():
    net, (x, y) = _net().train(), _data()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    rows = LayerHessianBNP(probe=(x, y), layer="4")("start", Context(model=net))
    assert {m for m, _, _ in rows} == set(LayerHessianBNP.METRICS)
    values = {(m, k): v for m, k, v in rows}
    assert values[(LayerHessianBNP.NULL, "plain")] == values[(LayerHessianBNP.NULL, "bnp")] >= 13
    assert net.training and torch.equal(torch.get_rng_state(), rng)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in net.parameters())
