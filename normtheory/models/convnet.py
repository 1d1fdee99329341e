"""Plain 1-D / 2-D convolutional network with a norm unit after every conv."""

from collections import OrderedDict

from torch import nn

from normtheory.models.layers import build_weight, conv_kind, needs_bias, nf_gamma, norm_unit


def build_convnet(
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
    binary: bool = False,
) -> nn.Sequential:
    """ConvNet: `depth` convs (kernel 3, padding 1, `width` channels) + norm unit, GAP, head.

    Conv ``i`` (1-based) has stride 2 when ``i`` is even and the current spatial size (the
    smallest spatial side) is at least 4, so the network downsamples every second layer while
    the feature map is large enough. 1-D for ``in_shape = (C, L)``, 2-D for ``(C, H, W)``.

    Module names, in forward order::

        conv1, <unit 1>, ..., conv{depth}, <unit depth>, pool, flatten, head

    where ``<unit i>`` is some of ``norm{i}, act{i}, drop{i}`` in the placement's order (see
    `normtheory.models.layers.norm_unit`); ``pool`` is global average pooling.

    Args:
        norm: norm name (no ``+ws`` suffix; weight standardization is `weight_std`).
        in_shape: ``(C, L)`` or ``(C, H, W)`` of one example.
        num_classes: output features of the head.
        width: channels of every conv.
        depth: number of conv layers.
        placement: norm placement, see `normtheory.models.layers`.
        weight_std: weight-standardized convs; the head stays a plain Linear.
        dropout_keep: keep probability q of the dropout layers.
        norm_kw: options for every `build_norm` call.
        binary: convs 2…depth binary (`normtheory.models.binary`: sign(x), α ⊙ sign(W)) and no
            ReLU in any unit (the sign is the activation); conv1, fed by the data, stays real.

    With norm ``nf`` every conv is scaled weight-standardized (`nf_gamma`: γ = 1 for conv1,
    the ReLU's gain after a ReLU, 1 after a sign).
    """
    kind = conv_kind(in_shape)
    channels, size = in_shape[0], min(in_shape[1:])
    layers: list[tuple[str, nn.Module]] = []
    for i in range(1, depth + 1):
        stride = 2 if i % 2 == 0 and size >= 4 else 1
        conv = build_weight(
            kind,
            channels,
            width,
            weight_std=weight_std,
            bias=needs_bias(norm),
            gamma=nf_gamma(norm, fed_by_data=i == 1, binary=binary),
            binary=binary and i > 1,
            kernel_size=3,
            stride=stride,
            padding=1,
        )
        layers.append((f"conv{i}", conv))  # (N, width, *spatial / stride)
        layers += norm_unit(
            i,
            width,
            norm=norm,
            placement=placement,
            dropout_keep=dropout_keep,
            norm_kw=norm_kw,
            activation=not binary,
        )
        channels, size = width, (size - 1) // stride + 1
    pool = nn.AdaptiveAvgPool1d(1) if kind == "conv1d" else nn.AdaptiveAvgPool2d(1)
    layers += [
        ("pool", pool),  # (N, width, 1) or (N, width, 1, 1)
        ("flatten", nn.Flatten()),  # (N, width)
        ("head", nn.Linear(channels, num_classes)),  # (N, num_classes)
    ]
    return nn.Sequential(OrderedDict(layers))
