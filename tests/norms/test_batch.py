"""BatchNorm (PyTorch parity, inference example weighing) and GhostBatchNorm specifics."""

import math

import pytest
import torch
from torch import nn

from normtheory.norms import BatchNorm, GhostBatchNorm

C = 4
SHAPES = [(8, C), (8, C, 5), (8, C, 3, 2)]
TOL = dict(rtol=1e-10, atol=1e-10)
_TORCH_BN = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d}


def _x(shape, seed: int, shift: float = 0.5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(shape, generator=gen, dtype=torch.float64) + shift


def _randomize_affine(*modules: nn.Module, seed: int = 0) -> None:
    """Gives all modules the same random, non-trivial gamma and beta."""
    gen = torch.Generator().manual_seed(seed)
    gamma = 1 + 0.5 * torch.randn(C, generator=gen, dtype=torch.float64)
    beta = 0.5 * torch.randn(C, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        for m in modules:
            m.weight.copy_(gamma)
            m.bias.copy_(beta)


def _train_both(a: nn.Module, b: nn.Module, shape, steps: int = 3) -> None:
    """Runs both modules on the same training batches, asserting equal outputs."""
    a.train(), b.train()
    for step in range(steps):
        x = _x(shape, seed=step)
        torch.testing.assert_close(a(x), b(x), **TOL)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_matches_torch_in_train_and_eval(shape, momentum):
    ours = BatchNorm(C, momentum=momentum).double()
    ref = _TORCH_BN[len(shape)](C, momentum=momentum).double()
    _randomize_affine(ours, ref)
    _train_both(ours, ref, shape)
    torch.testing.assert_close(ours.running_mean, ref.running_mean, **TOL)
    torch.testing.assert_close(ours.running_var, ref.running_var, **TOL)
    ours.eval(), ref.eval()
    x = _x(shape, seed=10)
    torch.testing.assert_close(ours(x), ref(x), **TOL)


@pytest.mark.parametrize("shape", SHAPES)
def test_example_weight_zero_is_plain_eval_bn(shape):
    plain, weighed = BatchNorm(C).double(), BatchNorm(C, example_weight=0.0).double()
    _randomize_affine(plain, weighed)
    _train_both(plain, weighed, shape)
    plain.eval(), weighed.eval()
    x = _x(shape, seed=10)
    assert torch.equal(plain(x), weighed(x))


@pytest.mark.parametrize("shape", SHAPES)
def test_example_weight_only_changes_inference(shape):
    plain, weighed = BatchNorm(C).double(), BatchNorm(C, example_weight=0.4).double()
    _randomize_affine(plain, weighed)
    _train_both(plain, weighed, shape)
    torch.testing.assert_close(plain.running_var, weighed.running_var, **TOL)
    plain.eval(), weighed.eval()
    x = _x(shape, seed=10)
    assert not torch.allclose(plain(x), weighed(x))


@pytest.mark.parametrize("shape", [(1, C, 7), (1, C, 3, 3)])
def test_example_weight_one_is_instance_statistics(shape):
    """w = 1 on one example: per-channel mean and biased variance over its spatial positions."""
    bn = BatchNorm(C, example_weight=1.0, eps=1e-3).double()
    _randomize_affine(bn)
    _train_both(bn, bn, (8,) + shape[1:])  # move the running stats away from (0, 1)
    bn.eval()
    x = _x(shape, seed=11, shift=-2.0)
    expected = torch.empty_like(x)
    for c in range(C):
        values = x[0, c].flatten().tolist()
        mean = math.fsum(values) / len(values)
        var = math.fsum((v - mean) ** 2 for v in values) / len(values)
        y = (x[0, c] - mean) / math.sqrt(var + 1e-3)
        expected[0, c] = bn.weight[c].item() * y + bn.bias[c].item()
    torch.testing.assert_close(bn(x), expected, **TOL)


def test_example_weight_one_ignores_the_rest_of_the_batch():
    bn = BatchNorm(C, example_weight=1.0).double().eval()
    x = _x((6, C, 5), seed=3)
    torch.testing.assert_close(bn(x)[2:3], bn(x[2:3]), **TOL)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5", True])
def test_example_weight_out_of_range_raises_naming_it(bad):
    with pytest.raises(ValueError, match="example_weight"):
        BatchNorm(C, example_weight=bad)


def test_example_weight_needs_running_stats():
    with pytest.raises(ValueError, match="track_running_stats"):
        BatchNorm(C, example_weight=0.2, track_running_stats=False)


@pytest.mark.parametrize("shape", SHAPES)
def test_ghost_batch_larger_than_batch_is_batchnorm(shape):
    ghost, bn = GhostBatchNorm(C, ghost_size=64).double(), BatchNorm(C).double()
    _randomize_affine(ghost, bn)
    _train_both(ghost, bn, shape)


@pytest.mark.parametrize("shape", SHAPES)
def test_ghost_batch_population_stats_and_eval_are_batchnorms(shape):
    ghost, bn = GhostBatchNorm(C, ghost_size=3).double(), BatchNorm(C).double()
    _randomize_affine(ghost, bn)
    ghost.train(), bn.train()
    for step in range(3):
        x = _x(shape, seed=step)
        assert not torch.allclose(ghost(x), bn(x))  # ghost batches normalize differently
    torch.testing.assert_close(ghost.running_mean, bn.running_mean, **TOL)
    torch.testing.assert_close(ghost.running_var, bn.running_var, **TOL)
    assert int(ghost.num_batches_tracked) == 3
    ghost.eval(), bn.eval()
    x = _x(shape, seed=10)
    torch.testing.assert_close(ghost(x), bn(x), **TOL)


@pytest.mark.parametrize("shape", [(10, C, 3), (10, C)])
def test_ghost_batches_are_independent_chunks(shape):
    """Each chunk of 4 (and the remainder of 2) is BatchNorm on that chunk alone."""
    ghost, bn = GhostBatchNorm(C, ghost_size=4).double(), BatchNorm(C).double()
    _randomize_affine(ghost, bn)
    x = _x(shape, seed=5)
    expected = torch.cat([bn(x[0:4]), bn(x[4:8]), bn(x[8:10])])
    torch.testing.assert_close(ghost(x), expected, **TOL)


@pytest.mark.parametrize("bad", [0, -3, 2.5, None])
def test_ghost_size_validated(bad):
    with pytest.raises(ValueError, match="ghost_size"):
        GhostBatchNorm(C, ghost_size=bad)


@pytest.mark.parametrize("kw", [dict(eps=-1.0), dict(momentum=1.5), dict(momentum="a")])
def test_bad_eps_momentum_raise(kw):
    for cls in (BatchNorm, GhostBatchNorm):
        with pytest.raises(ValueError, match=next(iter(kw))):
            cls(C, **kw)


def test_single_value_per_channel_in_training_raises():
    with pytest.raises(ValueError, match="more than 1 value"):
        GhostBatchNorm(C).train()(torch.randn(1, C))
