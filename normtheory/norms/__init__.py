"""Registry of normalization schemes: `build_norm(name, num_features, **kw)` and `list_norms()`.

The channel count is always the first argument, so any norm swaps in for BatchNorm without
touching call sites. Every module accepts (N, C), (N, C, L) and (N, C, H, W) inputs.

Besides BN, Ghost BN, GN, LN, IN, BGN and FRN: ``rms`` (RMSNorm, gain only), ``layer_nobias``
(LN with γ and no β), and the affine-free ``layer_noaffine`` and ``rms_noaffine``. A transformer
applies any of them token by token through `TokenNorm`.

Weight Standardization is not a norm layer but a property of the weight layer (see
`normtheory.norms.standardization`); a norm *spec* such as ``"group+ws"`` names a norm plus
weight standardization, see `parse_norm_spec`.

``nf`` (normalizer-free, Brock et al. 2021) has no norm layer either: `build_norm` gives an
identity, like ``none``; the model builders give an ``nf`` net scaled weight standardization
(`normtheory.norms.scaled_ws`) and, in a ResNet, the NF residual scaling
(`normtheory.models.nf`).
"""

from collections.abc import Callable
from functools import partial

from torch import nn

from normtheory.checks import check_int
from normtheory.norms.batch import BatchNorm, GhostBatchNorm
from normtheory.norms.frn import FilterResponseNorm
from normtheory.norms.group import BatchGroupNorm, GroupNorm, InstanceNorm, LayerNorm
from normtheory.norms.kalman import BatchKalmanNorm, link_kalman
from normtheory.norms.renorm import BatchRenorm
from normtheory.norms.rms import RMSNorm
from normtheory.norms.scaled_ws import (
    RELU_GAMMA,
    ScaledWSConv1d,
    ScaledWSConv2d,
    ScaledWSLinear,
    scaled_standardize_weight,
)
from normtheory.norms.standardization import WSConv1d, WSConv2d, WSLinear, standardize_weight
from normtheory.norms.token import TokenNorm

__all__ = [
    "BatchGroupNorm",
    "BatchKalmanNorm",
    "BatchNorm",
    "BatchRenorm",
    "FilterResponseNorm",
    "GhostBatchNorm",
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "NORM_FREE",
    "RELU_GAMMA",
    "ScaledWSConv1d",
    "ScaledWSConv2d",
    "ScaledWSLinear",
    "RMSNorm",
    "TokenNorm",
    "WSConv1d",
    "WSConv2d",
    "WSLinear",
    "build_norm",
    "list_norms",
    "link_kalman",
    "norm_includes_activation",
    "norm_layers",
    "parse_norm_spec",
    "register_norm",
    "scaled_standardize_weight",
    "standardize_weight",
]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_norm(name: str, factory: Callable[..., nn.Module]) -> None:
    """Adds `factory(num_features, **kw) -> nn.Module` under `name`; duplicates raise."""
    if name in _REGISTRY:
        raise ValueError(f"norm {name!r} is already registered; known norms: {list_norms()}")
    if "+" in name:
        raise ValueError(
            f"norm names may not contain '+' (reserved for specs like 'group+ws'): {name!r}"
        )
    _REGISTRY[name] = factory


def list_norms() -> list[str]:
    """Names of all registered norms, sorted."""
    return sorted(_REGISTRY)


def _unknown(name: object) -> ValueError:
    return ValueError(f"unknown norm {name!r}; known norms: {', '.join(list_norms())}")


def build_norm(name: str, num_features: int, **kw) -> nn.Module:
    """Builds the norm `name` over `num_features` channels.

    Args:
        name: one of `list_norms()`.
        num_features: channel count C of the (N, C, ...) input.
        **kw: options of that norm (e.g. ``groups=8`` for ``group``, ``ghost_size=4`` for
            ``ghost_batch``, ``example_weight=0.1`` for ``batch``). Unknown options raise.
    """
    if name not in _REGISTRY:
        raise _unknown(name)
    num_features = check_int("num_features", num_features)
    try:
        return _REGISTRY[name](num_features, **kw)
    except TypeError as err:
        raise ValueError(f"bad option for norm {name!r}: {err}") from None


def parse_norm_spec(spec: str) -> tuple[str, bool]:
    """Splits a norm spec into (norm name, weight_std): ``"group+ws" -> ("group", True)``."""
    if not isinstance(spec, str):
        raise ValueError(f"norm spec must be a string, got {spec!r}")
    name, plus, suffix = spec.partition("+")
    if plus and suffix != "ws":
        raise ValueError(f"bad norm spec {spec!r}: the only suffix is '+ws' (e.g. 'group+ws')")
    if name not in _REGISTRY:
        raise _unknown(name)
    return name, bool(plus)


def norm_includes_activation(name: str) -> bool:
    """True when the norm replaces the activation too (FRN's TLU): models add no ReLU after it."""
    name, _ = parse_norm_spec(name)
    return name == "frn"


register_norm("none", lambda num_features: nn.Identity())
register_norm("batch", BatchNorm)
register_norm("ghost_batch", GhostBatchNorm)
register_norm("group", GroupNorm)
register_norm("layer", LayerNorm)
register_norm("instance", InstanceNorm)
register_norm("batch_group", BatchGroupNorm)
register_norm("frn", FilterResponseNorm)
# Normalizer-free: no norm layer; the builders switch to scaled WS and NF residual blocks.
register_norm("nf", lambda num_features: nn.Identity())
NORM_FREE = ("none", "nf")  # the registered names without a norm layer
register_norm("rms", RMSNorm)
register_norm("rms_noaffine", partial(RMSNorm, affine=False))
register_norm("layer_nobias", partial(LayerNorm, bias=False))
register_norm("layer_noaffine", partial(LayerNorm, affine=False))
register_norm("batch_renorm", BatchRenorm)
register_norm("batch_kalman", BatchKalmanNorm)

# The module types that normalize (torch's BN/GN/LN/RMSNorm and this package's layers): what
# `norm_layers` finds. Weight standardization lives in the conv/linear layers, not here.
_NORM_TYPES = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    BatchGroupNorm,
    FilterResponseNorm,
    GroupNorm,
    RMSNorm,
    nn.RMSNorm,
    BatchRenorm,
    BatchKalmanNorm,
)


def norm_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The normalization layers of `model` (BN, Ghost BN, GN, LN, IN, BGN, FRN, RMSNorm, Batch
    Renorm, Batch Kalman Norm, torch's), by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _NORM_TYPES)}
