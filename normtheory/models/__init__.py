"""Small model builders that take a norm spec: `build_model(arch, norm=..., ...)`.

Architectures (`list_archs`): ``mlp``, ``convnet`` (1-D or 2-D), ``resnet`` (small
CIFAR-style ResNet, 1-D or 2-D) and ``transformer`` (patches of an image or signal, or token
ids; `normtheory.models.transformer`). In the first three each hidden weight layer is followed
by a *norm unit* whose order is set by the placement (`list_placements`); see
`normtheory.models.layers` for the orders and `build_mlp`, `build_convnet`, `build_resnet` for
the module names; the transformer places its norms ``pre_norm`` or ``post_norm``. Every model
is an `nn.Sequential` (the transformer: an `nn.Module`) whose last module is the plain linear
classifier ``head``, and carries its build arguments as ``model.config``, so
``build_model(**model.config)`` rebuilds it.
"""

import numbers
from collections import OrderedDict

from torch import nn

from normtheory.checks import check_int, is_int
from normtheory.models.convnet import build_convnet
from normtheory.models.layers import PLACEMENTS, build_weight, norm_unit
from normtheory.models.mlp import build_mlp
from normtheory.models.resnet import BasicBlock, build_resnet
from normtheory.models.transformer import TRANSFORMER_PLACEMENTS, build_transformer
from normtheory.norms import NORM_FREE, build_norm, link_kalman, parse_norm_spec

__all__ = [
    "BasicBlock",
    "build_convnet",
    "build_mlp",
    "build_model",
    "build_resnet",
    "build_transformer",
    "build_weight",
    "first_layer",
    "list_archs",
    "list_placements",
    "norm_unit",
]

_ARCHS = {
    "convnet": build_convnet,
    "mlp": build_mlp,
    "resnet": build_resnet,
    "transformer": build_transformer,
}
_FIRST_LAYERS = {
    "mlp": "fc1",
    "convnet": "conv1",
    "resnet": "stem.conv",
    "transformer": "embed.proj",
}
_TRANSFORMER_ONLY = {"heads": 4, "patch": 4, "vocab_size": 0}  # build options and defaults


def list_archs() -> list[str]:
    """Names of the architectures `build_model` knows, sorted."""
    return sorted(_ARCHS)


def first_layer(arch: str) -> str:
    """The module name of the first weight layer of `arch` (the one fed by the data): ``fc1``
    (mlp), ``conv1`` (convnet), ``stem.conv`` (resnet), ``embed.proj`` (transformer: the patch
    conv, or for token ids an ``nn.Embedding``)."""
    if arch not in _FIRST_LAYERS:
        raise ValueError(f"unknown arch {arch!r}; known: {list_archs()}")
    return _FIRST_LAYERS[arch]


def list_placements(arch: str | None = None) -> list[str]:
    """Norm placements, sorted: ``act_norm`` (W-ReLU-N), ``ic`` (W-ReLU-N-Dropout), ``last``
    (one N after the last hidden layer or residual block), ``norm_act`` (mlp, convnet, resnet),
    ``post_norm`` and ``pre_norm`` (transformer); all of them when `arch` is None, else those
    `arch` takes."""
    if arch is None:
        return sorted((*PLACEMENTS, *TRANSFORMER_PLACEMENTS))
    if arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; known archs: {', '.join(list_archs())}")
    return sorted(TRANSFORMER_PLACEMENTS if arch == "transformer" else PLACEMENTS)


def build_model(
    arch: str,
    *,
    norm: str,
    in_shape: tuple[int, ...],
    num_classes: int,
    width: int = 32,
    depth: int = 3,
    placement: str = "norm_act",
    weight_std: bool = False,
    dropout_keep: float = 1.0,
    residual: bool = True,
    norm_kw: dict | None = None,
    binary: bool = False,
    heads: int = 4,
    patch: int = 4,
    vocab_size: int = 0,
) -> nn.Module:
    """Builds `arch` with the norm spec `norm` in every hidden layer.

    Placements, for a weight layer W, norm N and keep probability q = `dropout_keep`:
    ``norm_act`` is W -> N -> ReLU, ``act_norm`` is W -> ReLU -> N, and ``ic`` is
    W -> ReLU -> N -> Dropout(1 - q), the IC layer of Chen et al. 2019 ("Rethinking the Usage
    of Batch Normalization and Dropout", arXiv:1905.05928) when N is ``batch``. With q < 1 the
    other placements also get a Dropout(1 - q) after their norm unit. With ``frn`` the TLU of
    the norm is the activation and no ReLU is added. Weight layers feeding a norm have no bias
    (the norm's β replaces it); with ``none`` they do. ``last`` (Bjorck et al. 2018) builds the
    net without norms (W -> ReLU, biases on) and puts one norm ``norm_last`` after the last
    hidden layer (mlp) or the last conv unit / residual block (convnet, resnet), before the
    pooling. Norm ``nf`` is normalizer-free (Brock et al. 2021): no norm layer, scaled weight
    standardization, and in a ResNet the NF residual blocks (`normtheory.models.nf`); the
    placement does not change it.

    Args:
        arch: one of `list_archs()`.
        norm: a norm from `normtheory.norms.list_norms()`, optionally with ``+ws`` (e.g.
            ``"group+ws"``), which turns on weight standardization as `weight_std` does.
        in_shape: shape of one example without the batch axis: any for ``mlp`` (flattened),
            ``(C, L)`` (1-D) or ``(C, H, W)`` (2-D) for ``convnet`` and ``resnet``.
        num_classes: output features of the head.
        width: hidden units (mlp) or channels (convnet; resnet stage 1).
        depth: hidden layers (mlp), conv layers (convnet) or 6n + 2 (resnet).
        placement: one of `list_placements()`.
        weight_std: weight-standardized (Qiao et al. 2019) hidden weight layers; the head
            stays a plain `nn.Linear`.
        dropout_keep: keep probability q in (0, 1] of the dropout layers.
        residual: resnet only; False removes the shortcuts and additions. Ignored otherwise.
        norm_kw: options passed to every `build_norm` call (e.g. ``{"groups": 8}``).
        binary: convnet and resnet only: binary hidden convs (sign activations, binary weights
            with a per-channel scale, straight-through gradients; `normtheory.models.binary`)
            and no ReLU; the first conv, the shortcut convs and the head stay real.
        heads, patch, vocab_size: transformer only (attention heads; patch size; the number
            of token ids, 0 for patches: `build_transformer`); in ``model.config`` only for it.

    Returns:
        An `nn.Sequential` (transformer: `nn.Module`) mapping (N, *in_shape) to
        (N, num_classes) logits, with the build arguments as ``model.config``.

    Raises:
        ValueError: naming the bad value and the valid choices.
    """
    config = dict(
        arch=arch,
        norm=norm,
        in_shape=tuple(in_shape) if isinstance(in_shape, (tuple, list)) else in_shape,
        num_classes=num_classes,
        width=width,
        depth=depth,
        placement=placement,
        weight_std=weight_std,
        dropout_keep=dropout_keep,
        residual=residual,
        norm_kw=dict(norm_kw or {}),
        binary=binary,
    )
    extra = dict(heads=heads, patch=patch, vocab_size=vocab_size)
    if arch == "transformer":
        config.update(extra)
    elif extra != _TRANSFORMER_ONLY:
        changed = sorted(k for k, v in extra.items() if v != _TRANSFORMER_ONLY[k])
        raise ValueError(f"{', '.join(changed)} apply to the transformer only, not to {arch!r}")
    _check(config)
    norm_name, ws_from_spec = parse_norm_spec(norm)
    kw = dict(
        norm=norm_name,
        in_shape=config["in_shape"],
        num_classes=num_classes,
        width=width,
        depth=depth,
        placement=placement,
        weight_std=bool(weight_std) or ws_from_spec,
        dropout_keep=float(dropout_keep),
        norm_kw=config["norm_kw"],
    )
    if arch == "resnet":
        kw["residual"] = bool(residual)
    if binary:
        kw["binary"] = True
    if arch == "transformer":
        kw.update(heads=heads, patch=patch, vocab_size=vocab_size)
    if placement == "last" and norm_name not in NORM_FREE:
        model = _ARCHS[arch](**{**kw, "norm": "none", "placement": "norm_act"})
        model = _with_last_norm(
            model, build_norm(norm_name, model.head.in_features, **kw["norm_kw"])
        )
    else:
        model = _ARCHS[arch](**kw)
    model = link_kalman(model)  # Batch Kalman Norm: each layer to the one before
    model.config = config
    return model


def _with_last_norm(model: nn.Sequential, norm: nn.Module) -> nn.Sequential:
    """`model` with `norm` (named ``norm_last``) inserted before its pooling (convnet, resnet)
    or its head (mlp)."""
    children = list(model.named_children())
    at = next(i for i, (name, _) in enumerate(children) if name in ("pool", "head"))
    return nn.Sequential(OrderedDict([*children[:at], ("norm_last", norm), *children[at:]]))


def _check(config: dict) -> None:
    """Raises ValueError for the first bad build argument, naming it and the valid choices."""
    arch, placement, in_shape = config["arch"], config["placement"], config["in_shape"]
    if arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; known archs: {', '.join(list_archs())}")
    if placement not in list_placements(arch):
        raise ValueError(
            f"unknown placement {placement!r} for {arch}; its placements: "
            f"{', '.join(list_placements(arch))}"
        )
    name, ws = parse_norm_spec(config["norm"])  # unknown norm -> ValueError listing the norms
    if name == "nf" and (ws or config["weight_std"]):
        raise ValueError("norm nf already scales and standardizes its weights; drop +ws")
    if not isinstance(config["binary"], bool):
        raise ValueError(f"binary must be True or False, got {config['binary']!r}")
    if config["binary"] and arch not in ("convnet", "resnet"):
        raise ValueError(f"binary nets are convnet or resnet (binary convs), not {arch}")
    for key in (
        "num_classes",
        "width",
        "depth",
        *(("heads", "patch") if "heads" in config else ()),
    ):
        check_int(key, config[key])
    if "vocab_size" in config:
        check_int("vocab_size", config["vocab_size"], 0)
    keep = config["dropout_keep"]
    if not isinstance(keep, numbers.Real) or isinstance(keep, bool) or not 0.0 < keep <= 1.0:
        raise ValueError(f"dropout_keep must be in (0, 1], got {keep!r}")
    if not (
        isinstance(in_shape, tuple) and in_shape and all(is_int(d) and d >= 1 for d in in_shape)
    ):
        raise ValueError(f"in_shape must be a non-empty tuple of positive ints, got {in_shape!r}")
    if arch not in ("mlp", "transformer") and len(in_shape) not in (2, 3):
        raise ValueError(
            f"{arch} needs in_shape (C, L) for 1-D or (C, H, W) for 2-D, got {in_shape!r}"
        )
