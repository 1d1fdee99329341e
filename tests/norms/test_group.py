"""GroupNorm group clipping and the exact special cases of Batch-Group Normalization."""

import pytest
import torch
from torch import nn

from normtheory.norms import (
    BatchGroupNorm,
    BatchNorm,
    GhostBatchNorm,
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    build_norm,
)

C = 6
SHAPES = [(10, C), (10, C, 5), (10, C, 3, 2)]
TOL = dict(rtol=1e-10, atol=1e-10)


def _x(shape, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(shape, generator=gen, dtype=torch.float64) + 0.5


def _same_affine(*modules: nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    gamma = 1 + 0.5 * torch.randn(C, generator=gen, dtype=torch.float64)
    beta = 0.5 * torch.randn(C, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        for m in modules:
            m.weight.copy_(gamma)
            m.bias.copy_(beta)


def _assert_same_module(a: nn.Module, b: nn.Module, shape, running: bool) -> None:
    """Same outputs over 3 training steps, same running stats, same eval outputs."""
    a, b = a.double(), b.double()
    _same_affine(a, b)
    a.train(), b.train()
    for step in range(3):
        x = _x(shape, seed=step)
        torch.testing.assert_close(a(x), b(x), **TOL)
    if running:
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name), **TOL)
    a.eval(), b.eval()
    x = _x(shape, seed=10)
    torch.testing.assert_close(a(x), b(x), **TOL)


# (C, requested groups) -> largest divisor of C that is <= the request, worked out by hand.
@pytest.mark.parametrize(
    "num_features, groups, expected",
    [(24, 32, 24), (20, 8, 5), (64, 32, 32), (7, 32, 7), (7, 3, 1), (12, 5, 4), (1, 32, 1)],
)
def test_groups_clipped_to_largest_divisor(num_features, groups, expected):
    assert GroupNorm(num_features, groups=groups).groups == expected
    assert BatchGroupNorm(num_features, groups=groups).groups == expected
    assert build_norm("group", num_features, groups=groups).groups == expected


def test_default_groups_is_32_clipped():
    assert GroupNorm(64).groups == 32
    assert GroupNorm(48).groups == 24
    assert BatchGroupNorm(48).groups == 24


def test_layer_and_instance_are_group_norm_extremes():
    assert LayerNorm(C).groups == 1
    assert InstanceNorm(C).groups == C
    x = _x((4, C, 5), seed=1)
    torch.testing.assert_close(LayerNorm(C).double()(x), GroupNorm(C, groups=1).double()(x), **TOL)
    torch.testing.assert_close(
        InstanceNorm(C).double()(x), GroupNorm(C, groups=C).double()(x), **TOL
    )


@pytest.mark.parametrize("shape", [(1, C), (1, C, 1)])
def test_group_norm_on_one_response_per_channel(shape):
    """F.group_norm raises on a single (1, C) example although each group has C/G values."""
    gn = GroupNorm(C, groups=2).double()
    _same_affine(gn)
    x = _x(shape, seed=2)
    expected = gn(x.expand(3, *shape[1:]))[:1]  # the fused kernel, on a batch of copies
    torch.testing.assert_close(gn(x), expected, **TOL)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_bgn_one_channel_whole_batch_is_batchnorm(shape, momentum):
    bgn = BatchGroupNorm(C, channels_per_group=1, momentum=momentum)
    _assert_same_module(bgn, BatchNorm(C, momentum=momentum), shape, running=True)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", [1, 3, 5, 16])
def test_bgn_one_channel_example_blocks_is_ghost_batchnorm(shape, size):
    bgn = BatchGroupNorm(C, examples_per_group=size, channels_per_group=1)
    _assert_same_module(bgn, GhostBatchNorm(C, ghost_size=size), shape, running=True)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("groups", [1, 2, 3, C])
def test_bgn_one_example_untracked_is_group_norm(shape, groups):
    bgn = BatchGroupNorm(C, examples_per_group=1, groups=groups, track_running_stats=False)
    _assert_same_module(bgn, GroupNorm(C, groups=groups), shape, running=False)


def test_bgn_running_stats_are_per_group_from_the_full_batch():
    bgn = BatchGroupNorm(C, examples_per_group=3, groups=2, momentum=1.0).double().train()
    x = _x((10, C, 4), seed=4)
    bgn(x)
    assert bgn.running_mean.shape == (2,)
    for g in range(2):
        block = x[:, 3 * g : 3 * g + 3]  # the 3 consecutive channels of group g
        torch.testing.assert_close(bgn.running_mean[g], block.mean(), **TOL)
        torch.testing.assert_close(bgn.running_var[g], block.var(unbiased=True), **TOL)


def test_bgn_untracked_eval_uses_batch_blocks():
    bgn = BatchGroupNorm(C, examples_per_group=4, groups=3, track_running_stats=False).double()
    x = _x((10, C, 2), seed=5)
    assert bgn.running_mean is None
    torch.testing.assert_close(bgn.train()(x), bgn.eval()(x), **TOL)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(groups=4, channels_per_group=2), "not both"),
        (dict(channels_per_group=4), "channels_per_group"),
        (dict(channels_per_group=0), "channels_per_group"),
        (dict(examples_per_group=0), "examples_per_group"),
        (dict(examples_per_group=2.0), "examples_per_group"),
        (dict(groups=0), "groups"),
        (dict(momentum=-0.1), "momentum"),
        (dict(eps=-1e-5), "eps"),
    ],
)
def test_bgn_bad_options_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        BatchGroupNorm(C, **kw)


@pytest.mark.parametrize("cls", [GroupNorm, BatchGroupNorm])
@pytest.mark.parametrize("groups", [0, -1, 2.5, "4"])
def test_bad_groups_raise(cls, groups):
    with pytest.raises(ValueError, match="groups"):
        cls(C, groups=groups)
