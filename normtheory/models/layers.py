"""Shared building blocks: weight layers and the norm unit that follows them.

Every architecture in `normtheory.models` is a stack of *weight layer + norm unit*. The norm
unit is the ordered list of modules that follows a weight layer W, fixed by the placement:

========== ==================================== =======================================
placement  order after W                        source
========== ==================================== =======================================
norm_act   N -> ReLU [-> Dropout(1 - q)]        Ioffe & Szegedy 2015 (BN before ReLU)
act_norm   ReLU -> N [-> Dropout(1 - q)]        "BN after ReLU" variant
ic         ReLU -> N -> Dropout(1 - q)          Chen et al. 2019, IC layer (N = batch)
last       ReLU [-> Dropout(1 - q)]; one N      Bjorck et al. 2018 (one BN after the last
           after the last hidden layer / block  residual block)
========== ==================================== =======================================

With q = `dropout_keep` the keep probability. The IC layer always carries its Dropout (p = 0
when q = 1, an identity) since it is part of its definition; the other placements get one
only when q < 1, so dropout is available with every placement. Norm ``none`` adds no module
(no `nn.Identity` padding). A norm that includes the activation (FRN, whose TLU replaces the
ReLU; see `norm_includes_activation`) adds no ReLU, for every placement; with ``last`` the
hidden units are plain W -> ReLU and `normtheory.models.build_model` adds the one norm.

Normalizer-free (``nf``) nets have no norm module either; their weight layers are scaled
weight-standardized (`build_weight` with ``gamma``, Brock et al. 2021), the gain γ being that of
the activation feeding the layer (`nf_gamma`). Binary nets (``binary``) use `BinaryConv1d` /
`BinaryConv2d` for the hidden convs, whose sign(x) is the activation: their units get no ReLU.
"""

from torch import Tensor, nn

from normtheory.models.binary import BinaryConv1d, BinaryConv2d
from normtheory.norms import (
    NORM_FREE,
    RELU_GAMMA,
    ScaledWSConv1d,
    ScaledWSConv2d,
    ScaledWSLinear,
    WSConv1d,
    WSConv2d,
    WSLinear,
    build_norm,
    norm_includes_activation,
)

PLACEMENTS = ("act_norm", "ic", "last", "norm_act")

_PLAIN = {"linear": nn.Linear, "conv1d": nn.Conv1d, "conv2d": nn.Conv2d}
_STANDARDIZED = {"linear": WSLinear, "conv1d": WSConv1d, "conv2d": WSConv2d}
_SCALED = {"linear": ScaledWSLinear, "conv1d": ScaledWSConv1d, "conv2d": ScaledWSConv2d}
_BINARY = {"conv1d": BinaryConv1d, "conv2d": BinaryConv2d}


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
    gamma: float | None = None,
    binary: bool = False,
    **kw,
) -> nn.Module:
    """Builds one weight layer, weight-standardized (Qiao et al. 2019) when `weight_std`,
    scaled weight-standardized (Brock et al. 2021, `normtheory.norms.scaled_ws`) with activation
    gain `gamma` when `gamma` is given, binary (`normtheory.models.binary`) when `binary`.

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
        gamma: the gain γ of the activation feeding a scaled-WS layer (None: not scaled WS).
        binary: a binary conv (sign(x) with α ⊙ sign(W)); its latent weight is scaled-WS when
            `gamma` is given, WS when `weight_std`, else plain. Convs only.
        **kw: further constructor arguments (``kernel_size``, ``stride``, ``padding``).
    """
    if binary:
        if kind not in _BINARY:
            raise ValueError(f"binary weight layers are convs (conv1d, conv2d), not {kind!r}")
        latent = "scaled_ws" if gamma is not None else "ws" if weight_std else "plain"
        extra = {"gamma": gamma} if gamma is not None else {}
        layer = _BINARY[kind](in_features, out_features, bias=bias, latent=latent, **extra, **kw)
    elif gamma is not None:
        layer = _SCALED[kind](in_features, out_features, bias=bias, gamma=gamma, **kw)
    else:
        table = _STANDARDIZED if weight_std else _PLAIN
        layer = table[kind](in_features, out_features, bias=bias, **kw)
    nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def needs_bias(norm: str) -> bool:
    """A weight layer feeding a norm needs no bias: the norm's shift β makes it redundant."""
    return norm in NORM_FREE


def nf_gamma(norm: str, *, fed_by_data: bool, binary: bool = False) -> float | None:
    """The activation gain γ of a weight layer in an ``nf`` net (None for any other norm): 1
    for a layer fed by the data or by a sign (a binary net), `RELU_GAMMA` after a ReLU."""
    if norm != "nf":
        return None
    return 1.0 if fed_by_data or binary else RELU_GAMMA


def norm_unit(
    index: int | str,
    num_features: int,
    *,
    norm: str,
    placement: str,
    dropout_keep: float,
    norm_kw: dict,
    activation: bool = True,
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
        activation: False leaves the ReLU out (binary nets: the next layer's sign is it).

    Returns:
        ``[(name, module), ...]``; an empty norm (``none``, ``nf``; every unit with
        ``last``) and a ReLU that the norm already provides (FRN's TLU) are left out.
    """
    if placement == "last":  # the one norm comes after the last unit (`build_model`)
        norm, placement = "none", "norm_act"
    norm_layer = (
        [] if norm in NORM_FREE else [(f"norm{index}", build_norm(norm, num_features, **norm_kw))]
    )
    act = [] if norm_includes_activation(norm) else [(f"act{index}", nn.ReLU())]
    act = act if activation else []
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
