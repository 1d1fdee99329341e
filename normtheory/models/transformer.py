"""A small transformer classifier: patch or token embedding, pre- or post-norm blocks, any norm.

Architecture (Vaswani et al. 2017; ViT, Dosovitskiy et al. 2021, for the patches)::

    embed (patches or tokens) + learned positions -> blocks.0 ... blocks.{depth-1}
      -> [norm, pre-norm only] -> mean over tokens -> head

Each block is multi-head self-attention (``attn.qkv``, ``attn.proj``) and an MLP (``mlp.fc1``,
GELU, ``mlp.fc2``, hidden width 4d), each with a residual connection, and a norm placed as
Xiong et al. 2020 ("On Layer Normalization in the Transformer Architecture", Fig. 1) name it:

========== ===================================================== ==========================
placement  block                                                  known as
========== ===================================================== ==========================
post_norm  x = N₁(x + Attn(x));  x = N₂(x + MLP(x))               Post-LN (Vaswani et al.)
pre_norm   x = x + Attn(N₁(x));  x = x + MLP(N₂(x)); N_final at end  Pre-LN (GPT-2, ViT)
========== ===================================================== ==========================

Any registered norm works, applied token by token (`normtheory.norms.TokenNorm`): ``layer``
is the per-token LayerNorm (with per-feature γ, β), ``rms`` RMSNorm, ``batch`` BN over the
batch and the tokens; ``none`` leaves the block without a norm. The attention is written out
(softmax(QKᵀ/√d_h) V) rather than a fused kernel, so it is twice differentiable on every
device (Hessian-vector products). Initialization as fairseq's Transformer: Xavier-uniform
linear weights, zero biases, embeddings N(0, 0.02²) for the positions and tokens.
"""

import math

import torch
from torch import Tensor, nn

from normtheory.norms import TokenNorm, WSConv1d, WSConv2d, WSLinear, build_norm

TRANSFORMER_PLACEMENTS = ("post_norm", "pre_norm")


def _linear(in_features: int, out_features: int, weight_std: bool) -> nn.Module:
    layer = (WSLinear if weight_std else nn.Linear)(in_features, out_features)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _norm(norm: str, width: int, norm_kw: dict) -> nn.Module:
    return nn.Identity() if norm == "none" else TokenNorm(build_norm(norm, width, **norm_kw))


class Attention(nn.Module):
    """Multi-head self-attention on (N, T, d): softmax(Q Kᵀ / √d_h) V per head, d_h = d / h."""

    def __init__(self, width: int, heads: int, weight_std: bool = False):
        super().__init__()
        self.heads = heads
        self.qkv = _linear(width, 3 * width, weight_std)
        self.proj = _linear(width, width, weight_std)

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)  # (N, h, T, T)
        out = scores.softmax(dim=-1) @ v  # (N, h, T, d_h)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class MLP(nn.Module):
    """fc1 (d -> 4d), GELU, fc2 (4d -> d), applied to every token."""

    def __init__(self, width: int, weight_std: bool = False):
        super().__init__()
        self.fc1, self.act = _linear(width, 4 * width, weight_std), nn.GELU()
        self.fc2 = _linear(4 * width, width, weight_std)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """One transformer block with its two norms placed as `placement` says."""

    def __init__(self, width, heads, *, norm, placement, weight_std, dropout_keep, norm_kw):
        super().__init__()
        self.pre = placement == "pre_norm"
        self.norm1, self.norm2 = _norm(norm, width, norm_kw), _norm(norm, width, norm_kw)
        self.attn, self.mlp = Attention(width, heads, weight_std), MLP(width, weight_std)
        self.drop1, self.drop2 = nn.Dropout(1.0 - dropout_keep), nn.Dropout(1.0 - dropout_keep)

    def forward(self, x: Tensor) -> Tensor:  # (N, T, d)
        if self.pre:
            x = x + self.drop1(self.attn(self.norm1(x)))
            return x + self.drop2(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.drop1(self.attn(x)))
        return self.norm2(x + self.drop2(self.mlp(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patches of an image (C, H, W) or signal (C, L), each linearly mapped to
    d features (a conv with stride = kernel = patch): (N, T, d), T = (H/p)(W/p) or L/p."""

    def __init__(self, in_shape: tuple[int, ...], width: int, patch: int, weight_std: bool):
        super().__init__()
        conv = {2: (WSConv1d, nn.Conv1d), 3: (WSConv2d, nn.Conv2d)}[len(in_shape)]
        self.proj = conv[0 if weight_std else 1](in_shape[0], width, patch, stride=patch)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (N, d, T) -> (N, T, d)


class TokenEmbed(nn.Module):
    """Token ids (N, T) -> embeddings (N, T, d)."""

    def __init__(self, vocab_size: int, width: int):
        super().__init__()
        self.proj = nn.Embedding(vocab_size, width)
        nn.init.normal_(self.proj.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x.long())


class Transformer(nn.Module):
    """The classifier of the module docstring: (N, *in_shape) -> (N, num_classes) logits."""

    def __init__(
        self, embed: nn.Module, tokens: int, width: int, blocks: list[Block], final: nn.Module,
        num_classes: int,
    ):  # fmt: skip
        super().__init__()
        self.embed = embed
        self.pos = nn.Parameter(torch.randn(1, tokens, width) * 0.02)  # (1, T, d)
        self.blocks = nn.Sequential(*blocks)
        self.norm = final
        self.head = nn.Linear(width, num_classes)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks(self.embed(x) + self.pos)  # (N, T, d)
        return self.head(self.norm(h).mean(dim=1))  # (N, num_classes)


def build_transformer(
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
    heads: int,
    patch: int,
    vocab_size: int,
) -> Transformer:
    """The transformer classifier of the module docstring.

    Module names: ``embed.proj`` (the patch conv, or the token ``nn.Embedding``), ``pos``,
    ``blocks.{i}.norm1``, ``blocks.{i}.attn.qkv``, ``blocks.{i}.attn.proj``,
    ``blocks.{i}.norm2``, ``blocks.{i}.mlp.fc1``, ``blocks.{i}.mlp.fc2``, ``norm`` (pre-norm:
    the final norm; post-norm: an identity), ``head``.

    Args:
        norm: norm name (no ``+ws`` suffix; weight standardization is `weight_std`).
        in_shape: ``(T,)`` token ids when `vocab_size` > 0, else an image ``(C, H, W)`` or a
            signal ``(C, L)`` cut into patches of `patch` (which must divide H, W or L).
        num_classes: output features of the head.
        width: d, the features per token (divisible by `heads`).
        depth: the number of blocks.
        placement: ``"pre_norm"`` or ``"post_norm"`` (see the module docstring).
        weight_std: weight-standardized linear layers and patch conv (the head stays plain).
        dropout_keep: keep probability of the dropout after attention and MLP.
        norm_kw: options for every `build_norm` call.
        heads: attention heads h.
        patch: patch side (images) or length (signals).
        vocab_size: the number of token ids (0: patches).
    """
    if placement not in TRANSFORMER_PLACEMENTS:
        raise ValueError(
            f"the transformer takes placement {' or '.join(TRANSFORMER_PLACEMENTS)}, "
            f"got {placement!r}"
        )
    if width % heads:
        raise ValueError(f"width ({width}) must be divisible by heads ({heads})")
    if vocab_size:
        if len(in_shape) != 1:
            raise ValueError(f"token inputs need in_shape (T,), got {in_shape!r}")
        embed, tokens = TokenEmbed(vocab_size, width), in_shape[0]
    else:
        if len(in_shape) not in (2, 3) or any(s % patch for s in in_shape[1:]):
            raise ValueError(
                f"patch ({patch}) must divide the spatial sizes of in_shape (C, H, W) or (C, L), "
                f"got {in_shape!r}"
            )
        embed, tokens = (
            PatchEmbed(in_shape, width, patch, weight_std),
            math.prod(s // patch for s in in_shape[1:]),
        )
    kw = dict(norm=norm, placement=placement, weight_std=weight_std, dropout_keep=dropout_keep,
              norm_kw=norm_kw)  # fmt: skip
    blocks = [Block(width, heads, **kw) for _ in range(depth)]
    final = _norm(norm, width, norm_kw) if placement == "pre_norm" else nn.Identity()
    return Transformer(embed, tokens, width, blocks, final, num_classes)
