"""Shared building blocks: weight layers and the norm unit that follows them.

Every architecture in `normtheory.models` is a stack of *weight layer + norm unit*. The norm
unit is the ordered list of modules that follows a weight layer W, fixed by the placement:

========== ==================================== =======================================
placement  order after W                        source
========== ==================================== =======================================
norm_act   N -> ReLU [-> Dropout(1 - q)]        Ioffe & Szegedy 2015 (BN before ReLU)
act_norm   ReLU -> N [-> Dropout(1 - q)]        "BN after ReLU" variant
ic         ReLU -> N -> Dropout(1 - q)          Chen et al. 2019, IC layer (N = batch)
========== ==================================== =======================================

With q = `dropout_keep` the keep probability. The IC layer always carries its Dropout (p = 0
when q = 1, an identity) since it is part of its definition; the other placements get one
only when q < 1, so dropout is available with every placement. Norm ``none`` adds no module
(no `nn.Identity` padding). A norm that includes the activation (FRN, whose TLU replaces the
ReLU; see `norm_includes_activation`) adds no ReLU, for every placement.
"""

from torch import Tensor, nn

from normtheory.norms import (
    WSConv1d,
    WSConv2d,
    WSLinear,
    build_norm,
    norm_includes_activation,
)

PLACEMENTS = ("act_norm", "ic", "norm_act")

_PLAIN = {"linear": nn.Linear, "conv1d": nn.Conv1d, "conv2d": nn.Conv2d}
_STANDARDIZED = {"linear": WSLinear, "conv1d": WSConv1d, "conv2d": WSConv2d}


def conv_kind(in_shape: tuple[int, ...]) -> str:
    """Weight-layer kind for a (C, L) or (C, H, W) input: ``"conv1d"`` or ``"conv2d"``."""
    return {2: "conv1d", 3: "conv2d"}[len(in_shape)]


def build_weight(
    kind: str,
    in_features: int,
    out_features: int,
    *,
    weight_std: bool,
    bias: bool,
    **kw,
) -> nn.Module:
    """Builds one weight layer, weight-standardized (Qiao et al. 2019) when `weight_std`.

    Weights get He initialization (He et al. 2015, N(0, 2/fan_in), as torchvision's VGG and
    ResNet use) and biases 0: PyTorch's default (kaiming_uniform with a = √5, variance 1/(3·fan_in))
    shrinks the signal by ~√6 per layer, so deep nets without normalization would not train at
    all and every "no norm" baseline would be crippled by its init rather than by the missing norm.

    Args:
        kind: ``"linear"``, ``"conv1d"`` or ``"conv2d"``.
        in_features: input features / channels.
        out_features: output features / channels.
        weight_std: use `WSLinear` / `WSConv1d` / `WSConv2d` instead of the plain layer.
        bias: whether the layer has a bias (False in front of a norm, whose β replaces it).
        **kw: further constructor arguments (``kernel_size``, ``stride``, ``padding``).
    """
    table = _STANDARDIZED if weight_std else _PLAIN
    layer = table[kind](in_features, out_features, bias=bias, **kw)
    nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def needs_bias(norm: str) -> bool:
    """A weight layer feeding a norm needs no bias: the norm's shift β makes it redundant."""
    return norm == "none"


def norm_unit(
    index: int | str,
    num_features: int,
    *,
    norm: str,
    placement: str,
    dropout_keep: float,
    norm_kw: dict,
) -> list[tuple[str, nn.Module]]:
    """The named modules that follow one weight layer, in forward order.

    Args:
        index: suffix of the module names: ``1`` gives ``norm1, act1, drop1``; ``""`` gives
            ``norm, act, drop``.
        num_features: channel count C of the weight layer's output.
        norm: norm name from `normtheory.norms.list_norms()` (no ``+ws`` suffix here).
        placement: one of `PLACEMENTS` (see the module docstring for the orders).
        dropout_keep: keep probability q in (0, 1]; Dropout has p = 1 - q.
        norm_kw: options passed to `build_norm`.

    Returns:
        ``[(name, module), ...]``; an empty norm (``none``) and a ReLU that the norm already
        provides (FRN's TLU) are left out.
    """
    norm_layer = (
        [] if norm == "none" else [(f"norm{index}", build_norm(norm, num_features, **norm_kw))]
    )
    act = [] if norm_includes_activation(norm) else [(f"act{index}", nn.ReLU())]
    drop = [(f"drop{index}", nn.Dropout(p=1.0 - dropout_keep))]
    if placement == "norm_act":
        return norm_layer + act + (drop if dropout_keep < 1.0 else [])
    if placement == "act_norm":
        return act + norm_layer + (drop if dropout_keep < 1.0 else [])
    if placement == "ic":
        return act + norm_layer + drop
    raise ValueError(f"unknown placement {placement!r}; known placements: {', '.join(PLACEMENTS)}")


def run(module: nn.Module, names: list[str], x: Tensor) -> Tensor:
    """Applies the children `names` of `module` to `x` in order."""
    for name in names:
        x = getattr(module, name)(x)
    return x
