"""Multilayer perceptron with a norm unit after every hidden layer."""

import math
from collections import OrderedDict

from torch import nn

from normtheory.models.layers import build_weight, needs_bias, nf_gamma, norm_unit


def build_mlp(
    *,
    norm: str,
    in_shape: tuple[int, ...],
    num_classes: int,
    width: int,
    depth: int,
    placement: str,
    weight_std: bool,
    dropout_keep: float,
    norm_kw: dict,
) -> nn.Sequential:
    """MLP: flatten, `depth` hidden layers ``Linear(width)`` + norm unit, then a linear head.

    Module names, in forward order::

        flatten, fc1, <unit 1>, fc2, <unit 2>, ..., fc{depth}, <unit depth>, head

    where ``<unit i>`` is some of ``norm{i}, act{i}, drop{i}`` in the placement's order (see
    `normtheory.models.layers.norm_unit`).

    Args:
        norm: norm name (no ``+ws`` suffix; weight standardization is `weight_std`).
        in_shape: shape of one example; flattened to ``prod(in_shape)`` features.
        num_classes: output features of the head.
        width: units per hidden layer.
        depth: number of hidden layers.
        placement: norm placement, see `normtheory.models.layers`.
        weight_std: weight-standardized hidden layers; the head stays a plain Linear.
        dropout_keep: keep probability q of the dropout layers.
        norm_kw: options for every `build_norm` call.

    With norm ``nf`` the hidden layers are scaled weight-standardized (`nf_gamma`).
    """
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    in_features = math.prod(in_shape)
    for i in range(1, depth + 1):
        gamma = nf_gamma(norm, fed_by_data=i == 1)
        fc = build_weight(
            "linear", in_features, width, weight_std=weight_std, bias=needs_bias(norm), gamma=gamma
        )
        layers.append((f"fc{i}", fc))  # (N, width)
        layers += norm_unit(
            i,
            width,
            norm=norm,
            placement=placement,
            dropout_keep=dropout_keep,
            norm_kw=norm_kw,
        )
        in_features = width
    layers.append(("head", nn.Linear(in_features, num_classes)))  # (N, num_classes)
    return nn.Sequential(OrderedDict(layers))
