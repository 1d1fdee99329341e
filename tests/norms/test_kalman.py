"""Batch Kalman Norm (`normtheory.norms.kalman`) against a naive float64 oracle written with
Python loops over channels and examples: a chain of three layers, each one's statistics
predicted from the previous one's estimate and corrected by its own batch statistics, in train
mode (outputs, running statistics) and eval mode; gradients (through the predecessor's estimate
too) against central finite differences of the oracle; the special cases q → 1 (BN) and an
unlinked layer (BN); and the linking inside `build_model`."""

import copy
import math

import pytest
import torch
from torch import nn

from normtheory.models import build_model
from normtheory.norms import BatchKalmanNorm, BatchNorm, link_kalman

EPS, MOM = 1e-5, 0.1
WIDTHS = (3, 4, 2)  # channels of the three layers: the transitions are 4×3 and 2×4


def _stats(values):
    n = len(values)
    mean = math.fsum(values) / n
    ss = math.fsum((v - mean) ** 2 for v in values)
    return mean, ss / n, ss / (n - 1)


def _chain(seed=0):
    """BKN(3) → 1×1 mixing (fixed) → BKN(4) → mixing → BKN(2), float64, random parameters."""
    gen = torch.Generator().manual_seed(seed)
    layers = [BatchKalmanNorm(c) for c in WIDTHS]
    mixes = [
        torch.randn(b, a, generator=gen, dtype=torch.float64) for a, b in zip(WIDTHS, WIDTHS[1:])
    ]
    model = nn.ModuleList(layers)
    link_kalman(model)
    model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.6 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        for layer in layers:
            layer.weight.add_(1.0)
    return model, mixes


def _forward(model, mixes, x):
    h = model[0](x)
    for layer, mix in zip(model[1:], mixes):
        h = layer(torch.einsum("oc,nc...->no...", mix, torch.tanh(h)))
    return h


class Oracle:
    """The chain by hand: per channel, Python floats, math.fsum."""

    def __init__(self, model, mixes):
        self.p = [{n: p.detach().tolist() for n, p in layer.named_parameters()} for layer in model]
        self.mixes = [m.tolist() for m in mixes]
        self.running = [([0.0] * c, [1.0] * c) for c in WIDTHS]

    def layer(self, k, xs, training):
        """xs[n][c] = list of values over positions; returns outputs and the estimate."""
        p, c_k = self.p[k], WIDTHS[k]
        est_mean, est_var = [], []
        out = [[None] * c_k for _ in xs]
        for c in range(c_k):
            pooled = [v for ex in xs for v in ex[c]]
            mu_b, var_b, var_u = _stats(pooled)
            if not training:
                mean, var = self.running[k][0][c], self.running[k][1][c]
            elif k == 0:
                mean, var, pop = mu_b, var_b, var_u
            else:
                a, (mu_prev, var_prev) = p["transition"][c], self.prev
                mu_p = math.fsum(a[j] * mu_prev[j] for j in range(len(a))) + p["transition_bias"][c]
                noise = math.log1p(math.exp(p["process_noise"][c]))
                var_p = math.fsum(a[j] ** 2 * var_prev[j] for j in range(len(a))) + noise
                q = 1 / (1 + math.exp(-p["gain_logit"][c]))
                mean = (1 - q) * mu_p + q * mu_b
                spread = (1 - q) * var_p + q * (1 - q) * (mu_b - mu_p) ** 2
                var, pop = spread + q * var_b, spread + q * var_u
            if training:
                est_mean.append(mean)
                est_var.append(var)
                rm, rv = self.running[k]
                rm[c] = (1 - MOM) * rm[c] + MOM * mean
                rv[c] = (1 - MOM) * rv[c] + MOM * pop
            for n, ex in enumerate(xs):
                g, b = p["weight"][c], p["bias"][c]
                out[n][c] = [g * (v - mean) / math.sqrt(var + EPS) + b for v in ex[c]]
        self.prev = (est_mean, est_var)
        return out

    def __call__(self, x, training=True):
        xs = x.reshape(x.shape[0], x.shape[1], -1).tolist()
        h = self.layer(0, xs, training)
        for k, mix in enumerate(self.mixes, start=1):
            mixed = [
                [[math.fsum(mix[o][c] * math.tanh(ex[c][m]) for c in range(len(ex)))
                  for m in range(len(ex[0]))] for o in range(len(mix))]
                for ex in h
            ]  # fmt: skip
            h = self.layer(k, mixed, training)
        return torch.tensor(h, dtype=torch.float64)


@pytest.mark.parametrize("shape", [(5, 3), (3, 3, 4)], ids=["ndim2", "ndim3"])
def test_chain_matches_oracle_in_train_and_eval_mode(shape):
    model, mixes = _chain()
    oracle = Oracle(model, mixes)
    gen = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(3):
        x = 1.5 * torch.randn(shape, generator=gen, dtype=torch.float64) + 0.4
        y = _forward(model, mixes, x)
        torch.testing.assert_close(y, oracle(x).reshape(y.shape), rtol=1e-10, atol=1e-10)
    for layer, (rm, rv) in zip(model, oracle.running):
        torch.testing.assert_close(layer.running_mean, torch.tensor(rm, dtype=torch.float64))
        torch.testing.assert_close(layer.running_var, torch.tensor(rv, dtype=torch.float64))
    model.eval()
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    y = _forward(model, mixes, x)
    torch.testing.assert_close(
        y, oracle(x, training=False).reshape(y.shape), rtol=1e-10, atol=1e-10
    )


def test_gradients_match_finite_differences_of_the_oracle():
    """Input and parameter gradients of Σ w·y, through the estimates passed along the chain,
    against central differences of the oracle (which shares no code with the module)."""
    model, mixes = _chain(seed=2)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 2, generator=gen, dtype=torch.float64)
    (_forward(model.train(), mixes, x) * w).sum().backward()

    def f(x_value, model_value):
        return float((Oracle(model_value, mixes)(x_value) * w).sum())

    h = 1e-6
    for idx in [(0, 0, 0), (2, 1, 1), (3, 2, 0)]:
        up, down = x.detach().clone(), x.detach().clone()
        up[idx] += h
        down[idx] -= h
        fd = (f(up, model) - f(down, model)) / (2 * h)
        assert x.grad[idx].item() == pytest.approx(fd, rel=1e-5, abs=1e-7)
    for name in ("1.transition", "2.transition", "2.gain_logit", "1.process_noise", "0.weight"):
        param = dict(model.named_parameters())[name]
        grad = param.grad.reshape(-1)[0].item()
        values = []
        for sign in (1, -1):
            shifted = copy.deepcopy(model)
            with torch.no_grad():
                dict(shifted.named_parameters())[name].view(-1)[0] += sign * h
            values.append(f(x.detach(), shifted))
        assert grad == pytest.approx((values[0] - values[1]) / (2 * h), rel=1e-5, abs=1e-7), name


def test_gain_one_is_a_chain_of_batch_norms():
    model, mixes = _chain(seed=4)
    bns = nn.ModuleList(BatchNorm(c) for c in WIDTHS).double()
    with torch.no_grad():
        for layer, bn in zip(model, bns):
            bn.weight.copy_(layer.weight)
            bn.bias.copy_(layer.bias)
            if layer.gain_logit is not None:
                layer.gain_logit.fill_(60.0)  # q = 1 − 1e-26
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(_forward(model.train(), mixes, x), _forward(bns.train(), mixes, x))
    for layer, bn in zip(model, bns):
        torch.testing.assert_close(layer.running_var, bn.running_var)


def test_an_unlinked_layer_or_a_predecessor_that_did_not_run_gives_batch_norm():
    model, mixes = _chain(seed=5)
    bn = BatchNorm(4).double()
    with torch.no_grad():
        bn.weight.copy_(model[1].weight)
        bn.bias.copy_(model[1].bias)
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(model[1].train()(x), bn.train()(x))  # model[0] never ran
    assert BatchKalmanNorm(4).gain_logit is None and BatchKalmanNorm(4).predecessor is None


def test_build_model_links_the_layers_in_order_and_copies_work():
    torch.manual_seed(0)
    model = build_model("resnet", norm="batch_kalman", in_shape=(1, 8, 8), num_classes=3,
                        width=4, depth=8)  # fmt: skip
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, BatchKalmanNorm)]
    assert layers[0][1].predecessor is None
    for (_, prev), (name, layer) in zip(layers, layers[1:]):
        assert layer.predecessor is prev, name
        assert layer.transition.shape == (layer.num_features, prev.num_features)
    model.train()(torch.randn(4, 1, 8, 8)).sum().backward()  # estimates now carry graphs
    twin = copy.deepcopy(model)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(twin.train()(x), model.train()(x))
        rebuilt = build_model(**model.config)
        rebuilt.load_state_dict(model.state_dict())
        torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x))


@pytest.mark.parametrize("gain", [0.0, 1.0, -0.1, True])
def test_bad_gain_raises(gain):
    with pytest.raises(ValueError, match="gain"):
        BatchKalmanNorm(4, gain=gain)
