"""Scale invariance (SI-ORTH, SI-GROWTH): closed forms and float64 SGD steps through BN with
eps = 0."""

import pytest
import torch
import torch.nn.functional as F

from normtheory.measure.weights import effective_lr, growth_residual, scale_invariance_cosine
from normtheory.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _randn(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


# -- closed forms ------------------------------------------------------------------------------


def test_cosine_closed_form():
    w = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    g = torch.tensor([[0.0, 1.0], [2.0, 2.0], [1.0, 0.0]])
    result = scale_invariance_cosine(w, g)
    torch.testing.assert_close(result.per_channel, torch.tensor([0.0, 1.0, 0.0]).double())
    assert result.total == pytest.approx(4 / (3**0.5 * 10**0.5))
    assert scale_invariance_cosine(w, torch.zeros_like(w)).total == 0.0
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        scale_invariance_cosine(w, g.T)


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_growth_residual_is_the_cross_term(weight_decay):
    """For w1 = w0 − η(g + λ w0): ‖w1‖² − (1 − ηλ)²‖w0‖² − η²‖g‖² = −2η(1 − ηλ)⟨w0, g⟩."""
    gen = torch.Generator().manual_seed(0)
    w0, g, lr = _randn(gen, 4, 3), _randn(gen, 4, 3), 0.2
    w1 = w0 - lr * (g + weight_decay * w0)
    expected = -2 * lr * (1 - lr * weight_decay) * float((w0 * g).sum())
    assert growth_residual(w0, w1, g, lr, weight_decay) == pytest.approx(expected, rel=1e-12)
    rel = growth_residual(w0, w1, g, lr, weight_decay, relative=True)
    assert rel == pytest.approx(expected / float(w1.square().sum()), rel=1e-12)


def test_effective_lr():
    w = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert effective_lr(w, 0.5) == pytest.approx(0.5 / 26)
    torch.testing.assert_close(
        effective_lr(w, 0.5, per_channel=True), torch.tensor([0.02, 0.5]).double()
    )


# -- SI-ORTH and SI-GROWTH through BN with eps = 0 -----------------------------------------------


def _bn_mlp(norm="batch"):
    torch.manual_seed(0)
    kw = {"eps": 0.0} if norm != "none" else {}
    model = build_model(
        "mlp", norm=norm, in_shape=(6,), num_classes=3, width=8, depth=2, norm_kw=kw
    )
    return model.double().train()


def _batch(seed=1):
    gen = torch.Generator().manual_seed(seed)
    return _randn(gen, 16, 6), torch.randint(3, (16,), generator=gen)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_si_growth_holds_for_bn_fed_weights_only(weight_decay):
    model, (x, y), lr = _bn_mlp(), _batch(), 0.5
    opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
    names = ("fc1", "fc2", "head")
    before = {n: getattr(model, n).weight.detach().clone() for n in names}
    F.cross_entropy(model(x), y).backward()
    grads = {n: getattr(model, n).weight.grad.clone() for n in names}  # loss only, no decay
    opt.step()
    res = {
        n: growth_residual(
            before[n], getattr(model, n).weight, grads[n], lr, weight_decay, relative=True
        )
        for n in names
    }
    assert abs(res["fc1"]) <= 1e-10 and abs(res["fc2"]) <= 1e-10
    assert abs(res["head"]) > 1e-4  # not scale-invariant: the cross term is there


def test_si_growth_fails_without_a_norm():
    model, (x, y), lr = _bn_mlp("none"), _batch(), 0.5
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    w0 = model.fc1.weight.detach().clone()
    F.cross_entropy(model(x), y).backward()
    g = model.fc1.weight.grad.clone()
    opt.step()
    assert abs(growth_residual(w0, model.fc1.weight, g, lr, relative=True)) > 1e-4


def test_cosine_is_zero_per_channel_for_bn_fed_weights():
    model, (x, y) = _bn_mlp(), _batch()
    F.cross_entropy(model(x), y).backward()
    for name in ("fc1", "fc2"):
        w = getattr(model, name).weight
        cos = scale_invariance_cosine(w, w.grad)
        assert cos.per_channel.abs().max() <= 1e-10 and abs(cos.total) <= 1e-10
    head = scale_invariance_cosine(model.head.weight, model.head.weight.grad)
    assert head.per_channel.abs().max() > 1e-3
