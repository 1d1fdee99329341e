"""Normalizer-free ResNets (NF-ResNets; Brock, De & Smith 2021, "Characterizing signal
propagation to close the performance gap in unnormalized ResNets", ICLR, Sec. 3–4), the
``norm="nf"`` option of `normtheory.models.build_resnet`.

Every residual block computes (paper Sec. 3)

    h_{i+1} = h_i + α · s_i · f_i(h_i / β_i),

- f_i the residual branch, variance preserving at initialization: pre-activation ReLU → conv →
  ReLU → conv, every conv scaled weight-standardized (`normtheory.norms.scaled_ws`) with the
  ReLU's gain γ, so Var(f_i(x)) ≈ Var(x) = 1 for the downscaled input x = h_i / β_i;
- β_i = √Var(h_i), the *expected* standard deviation of the block's input, tracked analytically
  at build time: Var = 1 after the stem, Var(h_{i+1}) = Var(h_i) + α² after a block, and reset to
  1 + α² after a transition block (a block that changes the width or the stride), whose shortcut
  is a scaled-WS 1×1 conv applied to the same activated, downscaled input relu(h_i / β_i);
- α the rate at which the variance grows per block (0.2 in the paper);
- s_i a learnable scalar gain at the end of the branch, initialized to 0 (SkipInit, De & Smith
  2020; in NFNets, Brock et al. 2021b), so each block is the identity (or its shortcut conv) at
  initialization.

After the last block comes a final ReLU (the pre-activation net's last activation), then global
average pooling and the (plain) linear head. Binary NF nets (``binary=True``; Chen et al. 2021,
"BNN − BN = ?") use binary convs with scaled-WS latent weights in the branches (γ = 1: their
input is a sign), no ReLU (the sign is the activation, so there is no final ReLU either), and
keep the stem, the shortcut convs and the head real.
"""

import math
from collections import OrderedDict

import torch
from torch import Tensor, nn

from normtheory.models.layers import build_weight
from normtheory.norms import RELU_GAMMA

ALPHA = 0.2  # the paper's α


class NFBlock(nn.Module):
    """One NF residual block, ``h + α · skip_gain · f(h / β)`` (module docstring).

    Module names: ``act1, conv1, act2, conv2, shortcut`` (``act*`` absent in a binary block; the
    shortcut is `nn.Identity` when the shapes match, else a 1×1 scaled-WS conv with the stride)
    and the parameter ``skip_gain`` (a scalar, 0 at initialization).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        kind: str,
        alpha: float,
        beta: float,
        binary: bool,
    ) -> None:
        super().__init__()
        self.alpha, self.beta, self.binary = float(alpha), float(beta), bool(binary)
        gamma = 1.0 if binary else RELU_GAMMA  # the activation feeding each conv
        conv = dict(kind=kind, weight_std=False, bias=True, gamma=gamma, binary=binary)
        if not binary:
            self.act1 = nn.ReLU()
        self.conv1 = build_weight(**_conv(conv, in_channels, out_channels, 3, stride))
        if not binary:
            self.act2 = nn.ReLU()
        self.conv2 = build_weight(**_conv(conv, out_channels, out_channels, 3, 1))
        if in_channels == out_channels and stride == 1:
            self.shortcut = nn.Identity()
        else:  # a real conv, fed by the same activated, downscaled input as the branch
            self.shortcut = build_weight(
                kind, in_channels, out_channels, weight_std=False, bias=True, gamma=gamma,
                kernel_size=1, stride=stride,
            )  # fmt: skip
        self.skip_gain = nn.Parameter(torch.zeros(()))

    @property
    def transition(self) -> bool:
        return not isinstance(self.shortcut, nn.Identity)

    def forward(self, h: Tensor) -> Tensor:
        x = h / self.beta  # (N, C_in, *spatial), variance ≈ 1
        if not self.binary:
            x = self.act1(x)
        skip = self.shortcut(x) if self.transition else h
        out = self.conv1(x)  # (N, C_out, *spatial / stride)
        if not self.binary:
            out = self.act2(out)
        out = self.conv2(out)
        return skip + self.alpha * self.skip_gain * out

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, beta={self.beta:.4g}, binary={self.binary}"


def _conv(conv: dict, c_in: int, c_out: int, k: int, stride: int) -> dict:
    """`build_weight` keywords of a k-wide conv (the positional sizes passed by name)."""
    return dict(conv, in_features=c_in, out_features=c_out, kernel_size=k, stride=stride,
                padding=k // 2)  # fmt: skip


def build_nf_resnet(
    *,
    in_shape: tuple[int, ...],
    num_classes: int,
    width: int,
    blocks: int,
    kind: str,
    binary: bool = False,
    alpha: float = ALPHA,
) -> nn.Sequential:
    """NF-ResNet: a scaled-WS stem conv (γ = 1, no activation: the blocks pre-activate), 3 stages
    of `blocks` `NFBlock`s (widths ``width, 2 width, 4 width``; the first block of stages 2 and
    3 has stride 2), a final ReLU (not in a binary net), GAP and a linear head.

    Module names: ``stem.conv, stage{s}.block{b}.…, final_act, pool, flatten, head``.
    """
    stem = build_weight(kind, in_shape[0], width, weight_std=False, bias=True, gamma=1.0,
                        kernel_size=3, padding=1)  # fmt: skip
    layers: list[tuple[str, nn.Module]] = [("stem", nn.Sequential(OrderedDict([("conv", stem)])))]
    channels, variance = width, 1.0  # Var(h) after the stem, at initialization
    for s, out_channels in enumerate([width, 2 * width, 4 * width], start=1):
        stage = []
        for b in range(1, blocks + 1):
            stride = 2 if s > 1 and b == 1 else 1
            block = NFBlock(channels, out_channels, stride, kind=kind, alpha=alpha,
                            beta=math.sqrt(variance), binary=binary)  # fmt: skip
            variance = (1.0 if block.transition else variance) + alpha**2
            stage.append((f"block{b}", block))
            channels = out_channels
        layers.append((f"stage{s}", nn.Sequential(OrderedDict(stage))))  # (N, C_s, ...)
    if not binary:
        layers.append(("final_act", nn.ReLU()))
    pool = nn.AdaptiveAvgPool1d(1) if kind == "conv1d" else nn.AdaptiveAvgPool2d(1)
    layers += [
        ("pool", pool),  # (N, 4 * width, 1) or (N, 4 * width, 1, 1)
        ("flatten", nn.Flatten()),  # (N, 4 * width)
        ("head", nn.Linear(channels, num_classes)),  # (N, num_classes)
    ]
    return nn.Sequential(OrderedDict(layers))
