"""BN Preconditioning (`normtheory.preconditioning`): the preconditioned gradient against the
dense product [g_W, g_b] U Uᵀ; one BNP step against a gradient step taken on an explicitly
normalized copy of the layer and mapped back (float64, train and eval of the copy agree: no
norm layer); the running averages by hand, at batch 1 too; statistics only inside `observe`;
and BNP inside `train` (batch 1, the replay snapshot)."""

import pytest
import torch
from torch import nn

from normtheory.data import load_dataset
from normtheory.models import build_model
from normtheory.preconditioning import BNPreconditioner, input_moments, precondition_grads
from normtheory.train import TrainConfig, train


def _u(mean, var, eps):
    """U = [[D⁻¹, 0], [−μᵀD⁻¹, 1]] for one row's fan-in statistics (float64)."""
    d_inv = 1 / torch.sqrt(var + eps)
    n = len(mean)
    u = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    u[:n, :n] = torch.diag(d_inv)
    u[n, :n] = -mean * d_inv
    u[n, n] = 1
    return u


@pytest.mark.parametrize("kernel", [(), (3,), (2, 2)], ids=["linear", "conv1d", "conv2d"])
def test_preconditioned_gradient_is_g_u_ut(kernel):
    gen = torch.Generator().manual_seed(0)
    out, fan = 3, 4
    gw = torch.randn(out, fan, *kernel, generator=gen, dtype=torch.float64)
    gb = torch.randn(out, generator=gen, dtype=torch.float64)
    mean = torch.randn(fan, generator=gen, dtype=torch.float64)
    var = torch.rand(fan, generator=gen, dtype=torch.float64) + 0.1
    new_w, new_b = precondition_grads(gw, gb, mean, var, eps=1e-3)
    k = max(1, len(gw[0, 0].reshape(-1)))
    u = _u(mean.repeat_interleave(k), var.repeat_interleave(k), 1e-3)
    rows = torch.cat([gw.reshape(out, -1), gb[:, None]], dim=1) @ u @ u.T  # (out, fan·k + 1)
    torch.testing.assert_close(new_w.reshape(out, -1), rows[:, :-1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(new_b, rows[:, -1], rtol=1e-12, atol=1e-12)
    only_w, none = precondition_grads(gw, None, mean, var, eps=1e-3)
    assert none is None
    torch.testing.assert_close(only_w.reshape(out, -1), gw.reshape(out, -1) @ (u @ u.T)[:-1, :-1])


def test_a_bnp_step_is_a_gradient_step_on_the_normalized_layer():
    """The oracle: a copy of the layer on the normalized input ĥ = (h − μ)/√(σ² + ε), with
    Ŵ = W D, b̂ = b + W μ; one SGD step on (Ŵ, b̂), mapped back to (W, b), must equal one BNP
    step on (W, b) when the running statistics are the batch's (momentum 1)."""
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x = 3 * torch.randn(16, 5, generator=gen, dtype=torch.float64) + 2
    y = torch.randint(0, 3, (16,), generator=gen)
    lr, eps = 0.3, 1e-4
    bnp = BNPreconditioner(net, names=["0"], momentum=1.0, eps=eps)
    with bnp.observe():
        loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    bnp.precondition()
    w0, b0 = net[0].weight.detach().clone(), net[0].bias.detach().clone()
    new_w, new_b = w0 - lr * net[0].weight.grad, b0 - lr * net[0].bias.grad
    mu, var = x.mean(0), x.var(0, correction=0)
    d = torch.sqrt(var + eps)
    w_hat = (w0 * d).requires_grad_()
    b_hat = (b0 + w0 @ mu).requires_grad_()
    h = torch.tanh(((x - mu) / d) @ w_hat.T + b_hat)
    nn.functional.cross_entropy(net[2](h), y).backward()
    w_hat2, b_hat2 = w_hat - lr * w_hat.grad, b_hat - lr * b_hat.grad
    torch.testing.assert_close(new_w, w_hat2 / d, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(new_b, b_hat2 - (w_hat2 / d) @ mu, rtol=1e-12, atol=1e-12)


def test_running_averages_by_hand_at_batch_one():
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.LazyLinear(2))
    net(torch.randn(1, 2, 4, 4))
    bnp = BNPreconditioner(net, names=["0"], momentum=0.25)
    m, s = torch.zeros(2), torch.ones(2)
    gen = torch.Generator().manual_seed(2)
    for _ in range(3):
        x = torch.randn(1, 2, 4, 4, generator=gen) + 1
        with bnp.observe():
            net(x)
        m = 0.75 * m + 0.25 * x.mean(dim=(0, 2, 3))
        s = 0.75 * s + 0.25 * x.square().mean(dim=(0, 2, 3))
    net(torch.randn(1, 2, 4, 4))  # outside `observe`: nothing is recorded
    torch.testing.assert_close(bnp.mean["0"], m)
    torch.testing.assert_close(bnp.square["0"], s)
    torch.testing.assert_close(bnp.variance("0"), (s - m**2).clamp_min(0))
    assert (bnp.variance("0") > 0).all()
    mean, square = input_moments(torch.ones(1, 2, 3))
    assert mean.tolist() == [1.0, 1.0] and square.tolist() == [1.0, 1.0]


def test_bad_arguments_raise():
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="not a Linear"):
        BNPreconditioner(net, names=["nope"])
    with pytest.raises(ValueError, match="momentum"):
        BNPreconditioner(net, momentum=0.0)
    with pytest.raises(ValueError, match="no Linear"):
        BNPreconditioner(nn.Sequential(nn.ReLU()))


def _run(bn_precondition, batch_size=1, sync_every=0, steps=40, lr=0.01):
    train_set, test_set = load_dataset("digits", max_train=200, max_test=100)
    torch.manual_seed(0)
    model = build_model("convnet", norm="none", in_shape=train_set.in_shape, num_classes=10,
                        width=8, depth=2)  # fmt: skip
    config = TrainConfig(lr=lr, momentum=0.9, batch_size=batch_size, steps=steps, seed=0,
                         device="cpu", bn_precondition=bn_precondition, sync_every=sync_every)  # fmt: skip
    return model, train(model, train_set, test_set, config)


LR_DIVERGING = 1e6  # a no-norm convnet diverges at step 9 (digits, batch 4)


@pytest.mark.usefixtures("one_thread")
def test_train_with_bnp_at_batch_one():
    plain, r0 = _run(False)
    bnp, r1 = _run(True)
    assert r0.status == r1.status == "completed"
    assert any(not torch.equal(a, b) for a, b in zip(plain.parameters(), bnp.parameters()))
    assert r1.final["train_loss"] == r1.final["train_loss"]  # finite, not NaN


@pytest.mark.usefixtures("one_thread")
def test_snapshot_restores_the_preconditioner_state():
    """A diverging run with unchecked stretches (sync_every > 1: the loop restores a snapshot
    and replays the stretch) ends exactly as a run checked every step, BNP statistics included."""
    a, ra = _run(True, batch_size=4, sync_every=1, steps=30, lr=LR_DIVERGING)
    b, rb = _run(True, batch_size=4, sync_every=7, steps=30, lr=LR_DIVERGING)
    assert ra.status == rb.status == "diverged" and ra.diverged_at == rb.diverged_at
    assert ra.diverged_at % 7 != 6  # found inside an unchecked stretch: a replay happened
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, equal_nan=True)  # inf/NaN by then
