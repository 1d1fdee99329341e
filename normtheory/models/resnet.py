"""Small CIFAR-style ResNet (He et al. 2016, "Deep Residual Learning", Sec. 4.2), 1-D or 2-D."""

from collections import OrderedDict

from torch import Tensor, nn

from normtheory.models.layers import build_weight, conv_kind, needs_bias, norm_unit, run
from normtheory.models.nf import build_nf_resnet
from normtheory.norms import build_norm


def blocks_per_stage(depth: int) -> int:
    """n for ``depth = 6n + 2`` (2 convs per block, 3 stages, plus stem and head)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"resnet depth must be 6n+2 with n >= 1 (e.g. 8, 14, 20, 32, 56), got {depth!r}"
        )
    return (depth - 2) // 6


class BasicBlock(nn.Module):
    """Two 3-wide convs, each followed by a norm unit, plus a shortcut.

    Placement ``norm_act`` is the standard block, ``relu(N(conv(relu(N(conv(x))))) + s(x))``:
    in the second unit everything after the norm (``act2``, ``drop2``) acts on the sum. For
    ``act_norm`` and ``ic`` both units are complete, ``unit2(conv2(unit1(conv1(x)))) + s(x)``,
    with nothing after the addition. FRN's TLU is the unit's activation, so with ``frn`` no
    ReLU follows the addition.

    The shortcut ``s`` is `nn.Identity` when shapes match, else a 1x1 conv with the stride
    followed by the norm (``shortcut.conv``, ``shortcut.norm``). With ``residual=False`` there
    is no shortcut module and no addition: a plain net with the same main-path layers.

    Module names: ``conv1, norm1, act1, drop1, conv2, norm2, act2, drop2, shortcut`` (those
    that the norm and placement leave out are absent, see `normtheory.models.layers`).

    With ``binary=True`` conv1 and conv2 are binary convs (sign(x), α ⊙ sign(W)) and there is no
    ReLU (the sign is the activation); the shortcut conv stays real (Bi-Real Net, ReActNet).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        kind: str,
        norm: str,
        placement: str,
        weight_std: bool,
        dropout_keep: float,
        norm_kw: dict,
        residual: bool,
        binary: bool = False,
    ) -> None:
        super().__init__()
        self.residual = residual
        unit = dict(norm=norm, placement=placement, dropout_keep=dropout_keep, norm_kw=norm_kw,
                    activation=not binary)  # fmt: skip
        weight = dict(weight_std=weight_std, bias=needs_bias(norm))
        self._main: list[str] = []
        self._post: list[str] = []
        for i, (c_in, s) in enumerate([(in_channels, stride), (out_channels, 1)], start=1):
            conv = build_weight(
                kind, c_in, out_channels, kernel_size=3, stride=s, padding=1, binary=binary,
                **weight,
            )  # fmt: skip
            layers = [(f"conv{i}", conv)] + norm_unit(i, out_channels, **unit)
            for name, module in layers:
                self.add_module(name, module)
            names = [name for name, _ in layers]
            if i == 2 and placement == "norm_act":
                # Standard ResNet: the last activation comes after the addition.
                split = names.index("norm2") + 1 if "norm2" in names else 1
                names, self._post = names[:split], names[split:]
            self._main += names
        if residual:
            self.shortcut = _shortcut(
                in_channels, out_channels, stride, kind=kind, norm=norm, norm_kw=norm_kw, **weight
            )

    def forward(self, x: Tensor) -> Tensor:
        h = run(self, self._main, x)  # (N, C_out, *spatial / stride)
        if self.residual:
            h = h + self.shortcut(x)
        return run(self, self._post, h)

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


def _shortcut(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    kind: str,
    norm: str,
    norm_kw: dict,
    weight_std: bool,
    bias: bool,
) -> nn.Module:
    """Identity when shapes match, else 1x1 conv with stride + norm (He et al. option B)."""
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    conv = build_weight(
        kind,
        in_channels,
        out_channels,
        kernel_size=1,
        stride=stride,
        weight_std=weight_std,
        bias=bias,
    )
    layers: list[tuple[str, nn.Module]] = [("conv", conv)]
    if norm != "none":
        layers.append(("norm", build_norm(norm, out_channels, **norm_kw)))
    return nn.Sequential(OrderedDict(layers))


def build_resnet(
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
    residual: bool,
    binary: bool = False,
) -> nn.Sequential:
    """ResNet-`depth` (depth = 6n + 2): stem, 3 stages of n `BasicBlock`s, GAP, linear head.

    Stage widths are ``width, 2 * width, 4 * width``; the first block of stages 2 and 3 has
    stride 2. 1-D convs for ``in_shape = (C, L)``, 2-D for ``(C, H, W)``. ``width=16`` and
    ``depth=20`` give He et al.'s CIFAR ResNet-20.

    Module names::

        stem.conv, stem.norm, stem.act, stem.drop,
        stage{s}.block{b}.conv1, .norm1, .act1, .drop1, .conv2, .norm2, .act2, .drop2,
        stage{s}.block{b}.shortcut (.conv, .norm when it projects),
        pool, flatten, head

    with s in 1..3 and b in 1..n, leaving out the modules the norm and placement do not use.

    Args:
        norm: norm name (no ``+ws`` suffix; weight standardization is `weight_std`).
        in_shape: ``(C, L)`` or ``(C, H, W)`` of one example.
        num_classes: output features of the head.
        width: channels of the stem and stage 1.
        depth: total weight layers on the main path, 6n + 2.
        placement: norm placement, see `normtheory.models.layers`.
        weight_std: weight-standardized convs (shortcuts included); the head stays plain.
        dropout_keep: keep probability q of the dropout layers.
        norm_kw: options for every `build_norm` call.
        residual: False drops the shortcuts and additions (a plain net, same main path).
        binary: binary convs in the blocks and no ReLU (`BasicBlock`); the stem conv, the
            shortcut convs and the head stay real.

    Norm ``nf`` builds the normalizer-free ResNet of `normtheory.models.nf` instead (its own
    pre-activation blocks: the placement does not apply; no dropout, no ``weight_std``, and it
    needs its residual path).
    """
    n = blocks_per_stage(depth)
    kind = conv_kind(in_shape)
    if norm == "nf":
        if dropout_keep < 1.0 or weight_std or not residual:
            raise ValueError(
                "the nf resnet has no dropout, scaled WS of its own and needs its residual "
                f"path: got dropout_keep={dropout_keep}, weight_std={weight_std}, "
                f"residual={residual}"
            )
        return build_nf_resnet(in_shape=in_shape, num_classes=num_classes, width=width,
                               blocks=n, kind=kind, binary=binary)  # fmt: skip
    unit = dict(norm=norm, placement=placement, dropout_keep=dropout_keep, norm_kw=norm_kw)
    stem_conv = build_weight(
        kind,
        in_shape[0],
        width,
        kernel_size=3,
        padding=1,
        weight_std=weight_std,
        bias=needs_bias(norm),
    )
    stem_unit = norm_unit("", width, **unit, activation=not binary)
    layers: list[tuple[str, nn.Module]] = [
        ("stem", nn.Sequential(OrderedDict([("conv", stem_conv)] + stem_unit)))
    ]  # (N, width, *spatial)
    channels = width
    for s, out_channels in enumerate([width, 2 * width, 4 * width], start=1):
        blocks = []
        for b in range(1, n + 1):
            stride = 2 if s > 1 and b == 1 else 1
            block = BasicBlock(
                channels,
                out_channels,
                stride,
                kind=kind,
                weight_std=weight_std,
                residual=residual,
                binary=binary,
                **unit,
            )
            blocks.append((f"block{b}", block))
            channels = out_channels
        layers.append((f"stage{s}", nn.Sequential(OrderedDict(blocks))))  # (N, C_s, ...)
    pool = nn.AdaptiveAvgPool1d(1) if kind == "conv1d" else nn.AdaptiveAvgPool2d(1)
    layers += [
        ("pool", pool),  # (N, 4 * width, 1) or (N, 4 * width, 1, 1)
        ("flatten", nn.Flatten()),  # (N, 4 * width)
        ("head", nn.Linear(channels, num_classes)),  # (N, num_classes)
    ]
    return nn.Sequential(OrderedDict(layers))
