"""`find_scale_invariant` checked against the expected names and against a numerical test of
invariance on every weight layer."""

import copy

import pytest
import torch
from torch import nn

from normtheory.measure.scale_invariant import find_scale_invariant, invariant_metric
from normtheory.models import build_model
from normtheory.norms import BatchNorm, GroupNorm, TokenNorm, build_norm

pytestmark = pytest.mark.usefixtures("one_thread")


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


# -- LayerNorm and RMSNorm: ours, torch's, per token -------------------------------------------


class _Tokens(nn.Module):
    """fc on (N, T, 4) tokens -> a per-token norm -> head on the mean token."""

    def __init__(self, norm, *, bias=False):
        super().__init__()
        self.fc, self.norm, self.head = nn.Linear(4, 4, bias=bias), norm, nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.norm(self.fc(x)).mean(dim=1))


class _ConvSlices(nn.Module):
    """conv -> torch's LayerNorm over (H, W) only: each normalized slice is one channel."""

    def __init__(self, bias):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(2, 3, 3, padding=1, bias=bias), nn.LayerNorm([5, 5])
        self.head = nn.Linear(75, 2)

    def forward(self, x):
        return self.head(self.norm(self.conv(x)).flatten(1))


TOKENS = (8, 5, 4)  # (N, T, d)


@pytest.mark.parametrize(
    "make, x_shape, kind",
    [
        (lambda: _Pair(nn.LayerNorm(4), bias=False), (6, 4), "whole"),
        (lambda: _Pair(nn.LayerNorm(4), bias=True), (6, 4), None),  # LN keeps b − mean(b)
        (lambda: _Pair(nn.LayerNorm(4, bias=False), bias=False), (6, 4), "whole"),
        (lambda: _Pair(nn.RMSNorm(4), bias=False), (6, 4), "whole"),
        (lambda: _Pair(nn.RMSNorm(4), bias=True), (6, 4), None),  # RMSNorm keeps any bias
        (lambda: _Pair(build_norm("rms", 4), bias=False), (6, 4), "whole"),
        (lambda: _Pair(build_norm("rms_noaffine", 4), bias=False), (6, 4), "whole"),
        (lambda: _Pair(build_norm("layer_nobias", 4), bias=False), (6, 4), "whole"),
        (lambda: _Tokens(nn.LayerNorm(4)), TOKENS, "whole"),  # a transformer's per-token LN
        (lambda: _Tokens(nn.RMSNorm(4)), TOKENS, "whole"),
        (lambda: _Tokens(TokenNorm(build_norm("layer", 4))), TOKENS, "whole"),
        (lambda: _Tokens(TokenNorm(build_norm("rms", 4))), TOKENS, "whole"),
        (lambda: _Tokens(TokenNorm(build_norm("batch", 4))), TOKENS, "per_channel"),
        (lambda: _Tokens(TokenNorm(build_norm("batch", 4)), bias=True), TOKENS, "per_channel"),
        (lambda: _Tokens(nn.LayerNorm(4), bias=True), TOKENS, None),
        (lambda: _ConvSlices(bias=False), (6, 2, 5, 5), "per_channel"),
        (lambda: _ConvSlices(bias=True), (6, 2, 5, 5), "per_channel"),  # slice means remove it
    ],
)
def test_layer_and_rms_norms_per_token(make, x_shape, kind):
    """The reported kind agrees with the numerical check (eps = 0, every row scaled, then all
    rows by one common factor)."""
    torch.manual_seed(0)
    model = make()
    x = torch.randn(x_shape, generator=torch.Generator().manual_seed(2))
    found = find_scale_invariant(model, x)
    name = "conv" if isinstance(model, _ConvSlices) else "fc"
    assert found == ({} if kind is None else {name: kind})
    assert _numerical_kind(_with_eps0(model), name, x) == kind


class _Keywords(nn.Module):
    """A model called with keyword inputs, as ``model(**batch)``, returning a dict."""

    def __init__(self):
        super().__init__()
        self.fc, self.norm, self.head = (
            nn.Linear(4, 4, bias=False),
            nn.LayerNorm(4),
            nn.Linear(4, 2),
        )

    def forward(self, features, scale=1.0):
        return {"logits": self.head(self.norm(self.fc(features * scale))), "extra": features}


def test_structured_inputs_outputs_and_a_forward():
    model = _Keywords()
    batch = {"features": torch.randn(6, 4), "scale": 2.0}
    assert find_scale_invariant(model, batch) == {"fc": "whole"}
    loss = lambda m: m(**batch)["logits"].logsumexp(dim=1).mean()  # noqa: E731
    assert find_scale_invariant(model, forward=loss) == {"fc": "whole"}
    rng = torch.get_rng_state()
    invariant_metric(model, forward=loss)
    assert torch.equal(torch.get_rng_state(), rng)
