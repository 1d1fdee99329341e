"""Shared settings of the exact-identity tests: tolerance, seeds, a float64 generator, and the
tiny eps that makes the library's BatchNorm compute the eps = 0 map."""

import sys

import torch

TOL = 1e-10
SEEDS = [0, 1, 2]
# F.batch_norm rejects eps = 0 in train mode; the smallest positive double leaves var + eps == var
# bit for bit for any var > 1e-290, so the library layer then computes the eps = 0 map.
TINY_EPS = sys.float_info.min * sys.float_info.epsilon


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)
