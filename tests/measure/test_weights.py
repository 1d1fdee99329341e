"""Scale invariance (SI-ORTH, SI-GROWTH): closed forms, float64 SGD steps through BN with eps = 0,
and `find_scale_invariant` checked against the expected names and against a numerical test of
invariance on every weight layer."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normtheory.measure.weights import (
    effective_lr,
    find_scale_invariant,
    growth_residual,
    scale_invariance_cosine,
)
from normtheory.models import build_model
from normtheory.norms import BatchNorm, GroupNorm

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


# -- find_scale_invariant -------------------------------------------------------------------------

HIDDEN = {
    "mlp": ["fc1", "fc2"],
    "convnet": ["conv1", "conv2", "conv3"],
    "resnet": [
        "stem.conv",
        "stage1.block1.conv1",
        "stage1.block1.conv2",
        "stage2.block1.conv1",
        "stage2.block1.conv2",
        "stage2.block1.shortcut.conv",
        "stage3.block1.conv1",
        "stage3.block1.conv2",
        "stage3.block1.shortcut.conv",
    ],
}
DEPTH = {"mlp": 2, "convnet": 3, "resnet": 8}
# norm spec, norm_kw, expected kind of every hidden weight (None: none is invariant)
NORMS = {
    "batch": ("batch", {}, "per_channel"),
    "ghost_batch": ("ghost_batch", {"ghost_size": 2}, "per_channel"),
    "group": ("group", {"groups": 2}, "whole"),
    "group-per-channel": ("group", {"groups": 8}, "per_channel"),  # one channel per group
    "batch_group": ("batch_group", {"groups": 2}, "whole"),
    "layer": ("layer", {}, "whole"),
    "frn": ("frn", {}, "per_channel"),
    "none": ("none", {}, None),
    "none+ws": ("none+ws", {}, "per_channel"),
}


def _model(arch, norm, norm_kw, placement="norm_act", eps0=False):
    torch.manual_seed(0)
    if eps0 and norm.partition("+")[0] != "none":
        norm_kw = {**norm_kw, "eps": 0.0}
    in_shape = (5,) if arch == "mlp" else (3, 8, 8)
    return build_model(
        arch,
        norm=norm,
        in_shape=in_shape,
        num_classes=3,
        width=8,
        depth=DEPTH[arch],
        placement=placement,
        norm_kw=norm_kw,
    )


@pytest.mark.parametrize("arch", sorted(HIDDEN))
@pytest.mark.parametrize("case", ["batch", "ghost_batch", "group", "none"])
def test_find_scale_invariant_names(arch, case):
    norm, kw, kind = NORMS[case]
    found = find_scale_invariant(_model(arch, norm, kw))
    expected = {} if kind is None else {name: kind for name in HIDDEN[arch]}
    assert found == expected
    assert "head" not in found


@pytest.mark.parametrize("case", sorted(set(NORMS) - {"batch", "ghost_batch", "group", "none"}))
def test_find_scale_invariant_other_norms(case):
    norm, kw, kind = NORMS[case]
    found = find_scale_invariant(_model("convnet", norm, kw))
    assert found == {name: kind for name in HIDDEN["convnet"]}


def _numerical_kind(model, name, x):
    """Invariance of the output of `model` (train mode, norms with eps = 0) under a random
    positive scale of each row of `name`'s weight, else under one common scale. Every forward
    draws the same dropout masks."""
    model = copy.deepcopy(model).double().train()
    x = x.double()

    def forward():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return model(x)

    with torch.no_grad():
        reference = forward()
        weight = model.get_submodule(name).weight
        gen = torch.Generator().manual_seed(5)
        c = 0.5 + 1.5 * torch.rand(weight.shape[0], generator=gen, dtype=torch.float64)
        kinds = {
            "per_channel": c.reshape(-1, *([1] * (weight.ndim - 1))),
            "whole": torch.tensor(2.5, dtype=torch.float64),
        }
        for kind, scale in kinds.items():
            original = weight.clone()
            weight.mul_(scale)
            out = forward()
            weight.copy_(original)
            if (out - reference).norm() <= 1e-9 * reference.norm():
                return kind
    return None


@pytest.mark.parametrize(
    "arch, case, placement",
    [
        ("mlp", "batch", "act_norm"),
        ("mlp", "group", "norm_act"),
        ("convnet", "ghost_batch", "norm_act"),
        ("convnet", "layer", "act_norm"),
        ("resnet", "batch", "norm_act"),
        ("resnet", "none", "norm_act"),
    ],
)
def test_find_scale_invariant_agrees_with_a_numerical_check(arch, case, placement):
    """Every weight layer, head included: the reported kind (or its absence) is what scaling
    the weight does to the train-mode output with eps = 0."""
    norm, kw, _ = NORMS[case]
    model = _model(arch, norm, kw, placement=placement, eps0=True)
    found = find_scale_invariant(model)
    x = torch.randn(8, *model.config["in_shape"], generator=torch.Generator().manual_seed(3))
    layers = [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    assert "head" in layers
    for name in layers:
        assert found.get(name) == _numerical_kind(model, name, x), name


class _Pair(nn.Module):
    """fc -> norm, plus optionally a second path from fc's output around the norm."""

    def __init__(self, norm, *, bias, act=None, skip=False):
        super().__init__()
        self.fc, self.norm, self.skip = nn.Linear(4, 4, bias=bias), norm, skip
        self.act = nn.Identity() if act is None else act
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc(x)
        z = self.norm(self.act(h))
        return self.head(z + h if self.skip else z)


@pytest.mark.parametrize(
    "make, invariant",
    [
        (lambda: _Pair(BatchNorm(4), bias=True), True),  # BN subtracts the bias
        (lambda: _Pair(GroupNorm(4, groups=2), bias=True), False),  # GN does not
        (lambda: _Pair(BatchNorm(4), bias=True, act=nn.ReLU()), False),  # bias before ReLU
        (lambda: _Pair(BatchNorm(4), bias=False, act=nn.ReLU()), True),
        (lambda: _Pair(BatchNorm(4), bias=True, act=nn.Dropout(0.3)), False),  # mask · bias
        (lambda: _Pair(BatchNorm(4), bias=False, act=nn.Dropout(0.3)), True),
        (lambda: _Pair(BatchNorm(4), bias=True, act=nn.Identity()), True),
        (lambda: _Pair(BatchNorm(4), bias=False, skip=True), False),  # a path around the norm
        (lambda: _Pair(nn.BatchNorm1d(4), bias=False), True),  # torch's own BN
    ],
)
def test_find_scale_invariant_on_custom_modules(make, invariant):
    model = make()
    found = find_scale_invariant(model, torch.randn(6, 4))
    assert found == ({"fc": "per_channel"} if invariant else {})
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(2))  # no all-dead channel
    kind = _numerical_kind(_with_eps0(model), "fc", x)
    assert (kind == "per_channel") == invariant


def _with_eps0(model):
    model = copy.deepcopy(model)
    for m in model.modules():
        if hasattr(m, "eps") and not isinstance(m, nn.BatchNorm1d):
            m.eps = 0.0
        elif isinstance(m, nn.BatchNorm1d):  # F.batch_norm refuses eps = 0 in train mode
            m.eps = 1e-300
    return model


class _Twice(nn.Module):
    """fc is applied twice: once into BN, once straight into the head."""

    def __init__(self):
        super().__init__()
        self.fc, self.norm, self.head = nn.Linear(4, 4, bias=False), BatchNorm(4), nn.Linear(8, 2)

    def forward(self, x):
        return self.head(torch.cat([self.norm(self.fc(x)), self.fc(x)], dim=1))


def test_a_layer_called_twice_must_feed_a_norm_every_time():
    assert find_scale_invariant(_Twice(), torch.randn(6, 4)) == {}
    assert _numerical_kind(_with_eps0(_Twice()), "fc", torch.randn(6, 4)) is None


def test_find_scale_invariant_leaves_the_model_and_rng_alone():
    model = build_model(
        "convnet",
        norm="batch",
        in_shape=(3, 6, 6),
        num_classes=3,
        width=4,
        depth=2,
        dropout_keep=0.5,
    )
    model.train()
    model.norm1.eval()
    state = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    find_scale_invariant(model)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and not model.norm1.training and model.norm2.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(p.grad is None for p in model.parameters())


def test_find_scale_invariant_needs_an_input_without_config():
    with pytest.raises(ValueError, match="example_input"):
        find_scale_invariant(_Pair(BatchNorm(4), bias=False))
