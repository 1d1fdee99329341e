"""`normtheory.models` (`build_model`) and the norm units of `normtheory.models.layers`, across
every arch: every arch x norm spec x placement builds and trains a step, and the structure (layer
order, bias, WS, names) is what the docstrings promise. Arch-specific structure: ``test_mlp.py``,
``test_convnet.py``, ``test_resnet.py``."""

import pytest
import torch
from model_cases import (
    BATCH,
    NUM_CLASSES,
    WEIGHT_TYPES,
    WS_TYPES,
    build,
    call_order,
    hidden_weights,
)
from torch import nn

from normtheory.models import build_model, first_layer, list_archs, list_placements
from normtheory.norms import GroupNorm, list_norms

SPECS = [*list_norms(), "group+ws"]
CASES = [  # (arch, in_shape, depth)
    ("mlp", (16,), 3),
    ("convnet", (1, 8, 8), 3),
    ("convnet", (1, 40), 3),
    ("resnet", (1, 8, 8), 8),
    ("resnet", (1, 40), 8),
]


def test_lists():
    assert list_archs() == ["convnet", "mlp", "resnet", "transformer"]
    assert list_placements("convnet") == ["act_norm", "ic", "last", "norm_act"]
    assert list_placements() == ["act_norm", "ic", "last", "norm_act", "post_norm", "pre_norm"]


@pytest.mark.parametrize("placement", list_placements("convnet"))
@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize(("arch", "in_shape", "depth"), CASES)
def test_forward_backward(arch, in_shape, depth, spec, placement):
    model = build(arch, in_shape, spec, depth=depth, placement=placement)
    x = torch.randn(BATCH, *in_shape)
    model.train()
    out = model(x)
    assert out.shape == (BATCH, NUM_CLASSES)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (BATCH, NUM_CLASSES)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("arch", "in_shape", "depth"), CASES)
@pytest.mark.parametrize(
    ("norm", "weight_std", "expect_ws"),
    [
        ("batch", False, False),
        ("batch", True, True),
        ("batch+ws", False, True),
        ("none+ws", False, True),
    ],
)
def test_ws_layers_iff_weight_std(arch, in_shape, depth, norm, weight_std, expect_ws):
    model = build(arch, in_shape, norm, depth=depth, weight_std=weight_std)
    hidden = hidden_weights(model)
    assert hidden
    assert all(isinstance(m, WS_TYPES) == expect_ws for m in hidden.values()), hidden
    assert type(model.head) is nn.Linear


@pytest.mark.parametrize("placement", [p for p in list_placements("convnet") if p != "last"])
@pytest.mark.parametrize(("arch", "in_shape", "depth"), CASES)
def test_frn_has_no_relu(arch, in_shape, depth, placement):
    model = build(arch, in_shape, "frn", depth=depth, placement=placement)
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    # and the ReLU models do have them
    model = build(arch, in_shape, "batch", depth=depth, placement=placement)
    assert any(isinstance(m, nn.ReLU) for m in model.modules())


@pytest.mark.parametrize("keep", [1.0, 0.7])
@pytest.mark.parametrize(("arch", "in_shape", "depth"), CASES)
def test_ic_order_is_weight_relu_norm_dropout(arch, in_shape, depth, keep):
    model = build(arch, in_shape, "batch", depth=depth, placement="ic", dropout_keep=keep)
    modules = dict(model.named_modules())
    for order in (list(modules), call_order(model, torch.randn(BATCH, *in_shape))):
        main = [n for n in order if "shortcut" not in n and n not in ("pool", "flatten", "head")]
        main = [n for n in main if n and not list(modules[n].children())]  # leaves only
        kinds = [type(modules[n]) for n in main]
        assert len(kinds) % 4 == 0 and kinds, main
        for i in range(0, len(kinds), 4):
            assert issubclass(kinds[i], WEIGHT_TYPES), main[i : i + 4]
            assert kinds[i + 1 : i + 4] == [nn.ReLU, type(modules[main[i + 2]]), nn.Dropout]
            assert "norm" in main[i + 2], main[i : i + 4]
            assert modules[main[i + 3]].p == pytest.approx(1 - keep)


@pytest.mark.parametrize("placement", ["norm_act", "act_norm"])
@pytest.mark.parametrize(("arch", "in_shape", "depth"), CASES)
def test_dropout_only_when_keep_below_one(arch, in_shape, depth, placement):
    model = build(arch, in_shape, "batch", depth=depth, placement=placement)
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    model = build(arch, in_shape, "batch", depth=depth, placement=placement, dropout_keep=0.6)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == len([n for n in hidden_weights(model) if "shortcut" not in n])
    assert all(d.p == pytest.approx(0.4) for d in drops)


@pytest.mark.parametrize(("arch", "in_shape", "depth"), CASES)
def test_bias_only_without_norm(arch, in_shape, depth):
    for norm, has_bias in [("batch", False), ("group", False), ("frn", False), ("none", True)]:
        model = build(arch, in_shape, norm, depth=depth)
        for name, m in hidden_weights(model).items():
            assert (m.bias is not None) == has_bias, (norm, name)
        assert model.head.bias is not None
    model = build(arch, in_shape, "none", depth=depth)
    assert not any("norm" in n for n, _ in model.named_modules())


def test_stable_names():
    mlp = dict(build("mlp", (16,), "batch", depth=2).named_children())
    assert list(mlp) == ["flatten", "fc1", "norm1", "act1", "fc2", "norm2", "act2", "head"]
    conv = dict(build("convnet", norm="batch", depth=2, dropout_keep=0.5).named_children())
    assert list(conv) == [
        *["conv1", "norm1", "act1", "drop1", "conv2", "norm2", "act2", "drop2"],
        *["pool", "flatten", "head"],
    ]
    res = dict(build("resnet", norm="batch").named_modules())
    block = ["conv1", "norm1", "act1", "conv2", "norm2", "act2", "shortcut"]
    expected = ["stem.conv", "stem.norm", "stem.act", *[f"stage1.block1.{n}" for n in block]]
    expected += ["stage2.block1.shortcut.conv", "stage2.block1.shortcut.norm"]
    expected += ["stage3.block1.conv1", "pool", "flatten", "head"]
    assert set(expected) <= set(res), set(expected) - set(res)
    assert isinstance(res["stage1.block1.shortcut"], nn.Identity)
    for arch, in_shape in [("mlp", (16,)), ("convnet", (1, 40)), ("resnet", (1, 40))]:
        names = [n for n, _ in build(arch, in_shape).named_children()]
        assert names[-1] == "head"


def test_norm_kw_reaches_every_norm():
    model = build("resnet", norm="group", norm_kw={"groups": 2})
    norms = [m for m in model.modules() if isinstance(m, GroupNorm)]
    assert len(norms) == 1 + 2 * 3 + 2  # stem, 2 per block, 2 projection shortcuts
    assert all(m.groups == 2 for m in norms)
    with pytest.raises(ValueError, match="bogus"):
        build("mlp", (16,), "batch", norm_kw={"bogus": 1})


def test_config_rebuilds_the_model():
    model = build("resnet", (1, 40), "group+ws", placement="ic", dropout_keep=0.9)
    assert model.config["arch"] == "resnet" and model.config["norm"] == "group+ws"
    assert model.config["in_shape"] == (1, 40) and model.config["norm_kw"] == {"groups": 4}
    torch.manual_seed(0)
    again = build_model(**model.config)
    torch.testing.assert_close(again.state_dict(), model.state_dict())
    assert again.config == model.config


@pytest.mark.parametrize(
    ("kw", "bad"),
    [
        ({"arch": "vgg"}, "vgg"),
        ({"placement": "pre_norm"}, "pre_norm"),
        ({"norm": "bogus"}, "bogus"),
        ({"norm": "group+xx"}, r"group\+xx"),
        ({"in_shape": (1, 2, 3, 4)}, r"\(1, 2, 3, 4\)"),
        ({"arch": "resnet", "in_shape": (16,)}, r"\(16,\)"),
        ({"arch": "mlp", "in_shape": ()}, r"\(\)"),
        ({"in_shape": (1, 0, 8)}, r"\(1, 0, 8\)"),
        ({"width": 0}, "width.*0"),
        ({"depth": 0}, "depth.*0"),
        ({"num_classes": 0}, "num_classes.*0"),
        ({"dropout_keep": 0.0}, "dropout_keep.*0.0"),
        ({"dropout_keep": 1.5}, "dropout_keep.*1.5"),
    ],
)
def test_bad_inputs_raise(kw, bad):
    args = {"arch": "convnet", "norm": "batch", "in_shape": (1, 8, 8), "num_classes": 3} | kw
    with pytest.raises(ValueError, match=bad):
        build_model(args.pop("arch"), **args)


def test_bad_choices_list_the_valid_ones():
    with pytest.raises(ValueError, match="convnet.*mlp.*resnet"):
        build_model("vit", norm="batch", in_shape=(16,), num_classes=2)
    with pytest.raises(ValueError, match="act_norm.*ic.*norm_act"):
        build_model("mlp", norm="batch", in_shape=(16,), num_classes=2, placement="post")
    with pytest.raises(ValueError, match="batch"):
        build_model("mlp", norm="bn", in_shape=(16,), num_classes=2)


def test_hidden_weights_have_he_init_and_deep_plain_net_keeps_signal():
    """Regression: with PyTorch's default init a deep no-norm net's activations vanish (~√6 per
    layer), so 'none' baselines never trained; hidden weights now get He init, head default."""
    torch.manual_seed(0)
    model = build_model(
        "convnet", norm="none", in_shape=(1, 8, 8), num_classes=10, width=64, depth=4
    )
    w = model.conv3.weight
    assert w.var().item() == pytest.approx(2.0 / (w.shape[1] * 9), rel=0.1)
    assert torch.all(model.conv3.bias == 0)
    feats = model[: list(dict(model.named_children())).index("pool")](torch.randn(256, 1, 8, 8))
    assert feats.pow(2).mean().item() > 0.1  # He: ≈0.3; PyTorch's default init: ≈7e-4


@pytest.mark.parametrize("arch, in_shape, depth", CASES)
def test_first_layer_is_the_first_weight_layer_the_forward_pass_calls(arch, in_shape, depth):
    """Oracle: the call order of the forward pass; the first weight layer it calls is fed by the
    data."""
    model = build(arch, in_shape, depth=depth)
    order = call_order(model, torch.randn(BATCH, *in_shape))
    modules = dict(model.named_modules())
    first = next(name for name in order if isinstance(modules[name], WEIGHT_TYPES))
    assert first_layer(arch) == first


def test_first_layer_names_the_known_archs_for_an_unknown_one():
    with pytest.raises(ValueError, match="known: \\['convnet', 'mlp', 'resnet', 'transformer'\\]"):
        first_layer("vgg")


@pytest.mark.parametrize(("arch", "in_shape", "depth"), CASES)
@pytest.mark.parametrize("norm", ["batch", "group"])
def test_last_placement_is_the_plain_net_with_one_norm_before_pooling(arch, in_shape, depth, norm):
    """``last`` (Bjorck et al. 2018): the net without norms (biases on, ReLUs kept) plus one norm
    ``norm_last`` over the features the head pools: after the last residual block (resnet),
    the last conv unit (convnet) or hidden layer (mlp). Oracle: the ``none`` net built from the
    same seed, with that norm applied to its features."""
    last = build(arch, in_shape, norm, depth=depth, placement="last")
    plain = build(arch, in_shape, "none", depth=depth)
    norms = [n for n, _ in last.named_modules() if "norm" in n]
    assert norms == ["norm_last"]
    assert all(m.bias is not None for m in hidden_weights(last).values())
    x = torch.randn(BATCH, *in_shape)
    order = call_order(last, x)
    after = "pool" if arch != "mlp" else "head"
    assert order[order.index("norm_last") + 1] == after
    missing, unexpected = plain.load_state_dict(last.state_dict(), strict=False)
    assert not missing and all(k.startswith("norm_last.") for k in unexpected)
    children = dict(plain.named_children())
    cut = list(children).index(after)
    features = nn.Sequential(*list(children.values())[:cut])
    rest = nn.Sequential(*list(children.values())[cut:])
    torch.testing.assert_close(last(x), rest(last.norm_last(features(x))))
