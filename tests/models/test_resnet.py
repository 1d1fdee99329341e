"""`normtheory.models.resnet`: the last ReLU of a block comes after the addition (norm_act), the
plain variant is the residual net with every addition removed, depth = 6n + 2 counts the main
path's weight layers, and stages 2 and 3 halve the resolution and double the width."""

import pytest
import torch
from model_cases import BATCH, build, call_order, hidden_weights


def test_resnet_norm_act_applies_last_relu_after_the_addition():
    model = build("resnet", norm="batch", placement="norm_act")
    order = call_order(model, torch.randn(BATCH, 1, 8, 8))
    block = [n.removeprefix("stage2.block1.") for n in order if n.startswith("stage2.block1.")]
    main = ["conv1", "norm1", "act1", "conv2", "norm2"]
    assert block == [*main, "shortcut.conv", "shortcut.norm", "act2"]
    model = build("resnet", norm="batch", placement="act_norm")
    order = call_order(model, torch.randn(BATCH, 1, 8, 8))
    block = [n.removeprefix("stage1.block1.") for n in order if n.startswith("stage1.block1.")]
    assert block == ["conv1", "act1", "norm1", "conv2", "act2", "norm2", "shortcut"]


@pytest.mark.parametrize("in_shape", [(1, 8, 8), (1, 40)])
def test_resnet_without_residual_has_no_additions(in_shape):
    res = build("resnet", in_shape, "batch").eval()
    plain = build("resnet", in_shape, "batch", residual=False).eval()
    assert all(m.residual for n, m in res.named_modules() if ".block" in n and n.count(".") == 1)
    assert not any("shortcut" in n for n, _ in plain.named_modules())
    missing, unexpected = plain.load_state_dict(res.state_dict(), strict=False)
    assert not missing and unexpected and all("shortcut" in k for k in unexpected)
    x = torch.randn(BATCH, *in_shape)
    with torch.no_grad():
        assert not torch.allclose(res(x), plain(x))
        # oracle: the plain net is the residual net with every addition removed
        for _, block in res.named_modules():
            if hasattr(block, "residual"):
                block.residual = False
        torch.testing.assert_close(res(x), plain(x))


@pytest.mark.parametrize("depth", [8, 14, 20])
def test_resnet_depth_counts_main_path_weight_layers(depth):
    model = build("resnet", norm="batch", depth=depth)
    main = [n for n in hidden_weights(model) if "shortcut" not in n]
    assert len(main) + 1 == depth  # + head
    assert len(model.stage1) == len(model.stage3) == (depth - 2) // 6


@pytest.mark.parametrize("depth", [1, 7, 9, 10, 16])
def test_resnet_depth_must_be_6n_plus_2(depth):
    with pytest.raises(ValueError, match=rf"6n\+2.*got {depth}"):
        build("resnet", norm="batch", depth=depth)


def test_resnet_downsamples_in_stages_2_and_3():
    model = build("resnet", (1, 8, 8), "batch")
    shapes = {}
    for name in ("stem", "stage1", "stage2", "stage3"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, n=name: shapes.update({n: o.shape})
        )
    model(torch.randn(BATCH, 1, 8, 8))
    assert shapes == {
        "stem": (BATCH, 8, 8, 8),
        "stage1": (BATCH, 8, 8, 8),
        "stage2": (BATCH, 16, 4, 4),
        "stage3": (BATCH, 32, 2, 2),
    }
