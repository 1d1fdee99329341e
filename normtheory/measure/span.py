"""The span of a layer's inputs and the part of its weight orthogonal to it (SPAN-ORTH).

For a layer y = W x (a convolution applies W to the im2col patches x of its input), the
gradient of any loss is a sum of outer products with the inputs, ∇_W L = Σ_n δ_n x_nᵀ, so each
row of ∇_W L lies in S = span{x_n : all inputs seen}. With P⊥ = I − B Bᵀ the projector onto
S⊥ (B an orthonormal basis of S), SGD, with or without momentum, never changes W P⊥; plain SGD
with coupled weight decay λ and step η multiplies it by (1 − ηλ) per step, so
W_t P⊥ = (1 − ηλ)^t W_0 P⊥. Adaptive optimizers (Adam) rescale coordinates and leave S, so
they create orthogonal weight norm (Liu et al. 2021, "Implicit biases of SGD on
BN-DNNs" / "Weight rescaling"; CLAIMS.md: SPAN-ORTH).

`InputSpan` accumulates the Gram matrix G = Σ_n x_n x_nᵀ of a layer's inputs in float64
(memory O(fan_in²), never O(samples)); S is the range of G. `orthogonal_weight_norm` measures
‖W P⊥‖ per output row and in total.

Weight-standardized layers (`WSLinear`, `WSConv*d`) are accepted, since their inputs are
unfolded exactly like the plain layer's; but their raw weight does not enter linearly, so
SPAN-ORTH holds for them only approximately, and only for the standardized weight.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_CHUNK = 1 << 24  # float64 patch entries per chunk of `InputSpan.update` (128 MiB)


class InputSpan:
    """Streaming accumulator of the span of the inputs a weight layer has seen.

    Linear: the inputs are the vectors x (in_features,), any leading dims flattened. Conv1d /
    Conv2d: the inputs are the patches the kernel is applied to, unfolded exactly as the conv
    does (stride, zero padding — padded zeros are part of the patches —, dilation); with
    ``groups = g`` each group has its own fan-in C_in/g · prod(kernel) and its own span, so one
    Gram per group is kept. Patch entries are ordered as ``weight.reshape(out, -1)`` orders
    the fan-in: channel-major, then kernel positions.

    Example::

        span = InputSpan(model.conv1)
        for x in batches:
            span.update(x)                       # the conv's inputs (N, C, H, W)
        orthogonal_weight_norm(model.conv1.weight, span).relative

    Args:
        layer: an `nn.Linear`, `nn.Conv1d` or `nn.Conv2d` (subclasses such as the WS layers
            included); only its geometry is kept, not the module.
        rtol: an eigenvalue λ of G counts towards the span when λ > rtol · λ_max. G squares
            the singular values of the input matrix, so the default 1e-10 cuts singular values
            below 1e-5 of the largest. The Gram is float64: float32 inputs that lie exactly in
            a subspace (repeated channels, constant pixels, a rank-r embedding rounded to
            float32) leave eigenvalues ≲ 1e-15 λ_max outside it, while a rare input direction
            (a pixel lit in a handful of images) can sit at 1e-7 λ_max and still be moved by
            SGD: a larger rtol would call it orthogonal.

    Raises:
        NotImplementedError: a conv with ``padding_mode`` other than ``"zeros"``.
        TypeError: another kind of layer.
    """

    def __init__(self, layer: nn.Linear | nn.Conv1d | nn.Conv2d, *, rtol: float = 1e-10) -> None:
        if not (isinstance(rtol, int | float) and 0 <= rtol < 1):
            raise ValueError(f"rtol must be a float in [0, 1), got {rtol!r}")
        self.rtol = float(rtol)
        if isinstance(layer, nn.Linear):
            self.kind, self.groups = "linear", 1
            self.in_channels, self.out_channels = layer.in_features, layer.out_features
            self.kernel_size: tuple[int, ...] = ()
        elif isinstance(layer, nn.Conv1d | nn.Conv2d):
            if layer.padding_mode != "zeros":
                raise NotImplementedError(
                    f"InputSpan supports padding_mode='zeros' only, got "
                    f"padding_mode={layer.padding_mode!r}"
                )
            self.kind = "conv1d" if isinstance(layer, nn.Conv1d) else "conv2d"
            self.in_channels, self.out_channels = layer.in_channels, layer.out_channels
            self.groups = layer.groups
            self.kernel_size = tuple(layer.kernel_size)
            self.stride = tuple(layer.stride)
            self.dilation = tuple(layer.dilation)
            self.pads = _pads(layer.padding, self.kernel_size, self.dilation)
        else:
            raise TypeError(
                f"InputSpan needs an nn.Linear, nn.Conv1d or nn.Conv2d, got {type(layer).__name__}"
            )
        self.fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
        self._gram: Tensor | None = None  # (g, fan_in, fan_in), float64
        self._cache: dict[str, object] = {}  # eigh, bases, projector of the current Gram
        self.n_seen = 0  # input vectors (rows / patches) added to the Gram
        self.n_examples = 0  # examples seen (for Linear: input vectors, leading dims flattened)

    # -- accumulation -------------------------------------------------------------------------

    def update(self, x: Tensor) -> "InputSpan":
        """Adds the inputs `x` of the layer: (..., in_features) for Linear, (N, C, L) or
        (C, L) for Conv1d, (N, C, H, W) or (C, H, W) for Conv2d. Returns self.

        Works in chunks of examples, so the float64 patch matrix stays under ~128 MiB."""
        x = self._batched(x.detach())  # (N, in_features) or (N, C, *spatial)
        per_example = x[0].numel() * math.prod(self.kernel_size)  # about, for a conv
        for chunk in x.split(max(1, _CHUNK // max(per_example, 1))):
            patches = self._patches(chunk)  # (g, M, fan_in), float64
            gram = patches.transpose(1, 2) @ patches  # (g, fan_in, fan_in)
            self._gram = gram if self._gram is None else self._gram + gram.to(self._gram.device)
            self.n_seen += patches.shape[1]
        self.n_examples += x.shape[0]
        self._cache = {}
        return self

    def patches(self, x: Tensor) -> Tensor:
        """The input vectors the layer's weight rows are applied to, for a batch `x` of the
        layer's inputs: (g, M, fan_in) float64 (Linear: g = 1, M = N; conv: M = N · positions,
        entries ordered as ``weight.reshape(out, -1)``). Not accumulated."""
        return self._patches(self._batched(x.detach()))

    def _batched(self, x: Tensor) -> Tensor:
        """`x` with one batch axis, checked against the layer's input shape."""
        if self.kind == "linear":
            if x.ndim < 1 or x.shape[-1] != self.in_channels:
                raise ValueError(
                    f"Linear input must have shape (..., {self.in_channels}), got {tuple(x.shape)}"
                )
            return x.reshape(-1, self.in_channels)
        spatial = len(self.kernel_size)
        if x.ndim == spatial + 1:
            x = x.unsqueeze(0)  # unbatched input, as the conv accepts it
        if x.ndim != spatial + 2 or x.shape[1] != self.in_channels:
            dims = ", ".join(["N", str(self.in_channels), *(["L"] if spatial == 1 else ["H", "W"])])
            raise ValueError(f"{self.kind} input must have shape ({dims}), got {tuple(x.shape)}")
        return x

    def _patches(self, x: Tensor) -> Tensor:
        """The input vectors of a batch `x`, grouped: (g, M, fan_in) in float64."""
        x = x.to(torch.float64)
        if self.kind == "linear":
            return x[None]  # (1, N, in_features)
        kernel, dilation, stride, pads = self.kernel_size, self.dilation, self.stride, self.pads
        if len(kernel) == 1:  # a 1-D conv is a 2-D conv over (1, L)
            x, kernel, dilation, stride = x.unsqueeze(2), (1, *kernel), (1, *dilation), (1, *stride)
            pads = ((0, 0), *pads)
        # F.pad takes (left, right) pairs from the last dim backwards; the pads may be uneven
        # (padding="same" with an even effective kernel).
        x = F.pad(x, [p for pair in reversed(pads) for p in pair])
        cols = F.unfold(x, kernel, dilation=dilation, stride=stride)  # (N, C * K, L_out)
        cols = cols.reshape(x.shape[0], self.groups, self.fan_in, -1)  # (N, g, fan_in, L_out)
        return cols.permute(1, 0, 3, 2).reshape(self.groups, -1, self.fan_in)  # (g, M, fan_in)

    # -- getters ------------------------------------------------------------------------------

    def _gram3(self) -> Tensor:
        if self._gram is None:  # nothing seen: the span is {0}
            return torch.zeros(self.groups, self.fan_in, self.fan_in, dtype=torch.float64)
        return self._gram

    def _squeeze(self, t: Tensor) -> Tensor:
        return t[0] if self.groups == 1 else t

    def gram(self) -> Tensor:
        """G = Σ x xᵀ in float64: (fan_in, fan_in), or (g, fan_in, fan_in) with groups."""
        return self._squeeze(self._gram3().clone())

    def _eigh(self) -> tuple[Tensor, Tensor]:
        if "eig" not in self._cache:
            self._cache["eig"] = torch.linalg.eigh(self._gram3())  # (g, F), (g, F, F) ascending
        return self._cache["eig"]

    def _bases(self) -> list[Tensor]:
        if "bases" not in self._cache:
            values, vectors = self._eigh()
            out = []
            for lam, vec in zip(values, vectors):
                top = lam.max()
                keep = lam > self.rtol * top if top > 0 else torch.zeros_like(lam, dtype=torch.bool)
                out.append(vec[:, keep])  # (fan_in, r)
            self._cache["bases"] = out
        return self._cache["bases"]

    def basis(self) -> Tensor | list[Tensor]:
        """Orthonormal basis of the span as columns, (fan_in, r): eigenvectors of G with
        eigenvalue > rtol · λ_max. With groups, a list with one (fan_in, r_j) per group."""
        bases = self._bases()
        return bases[0] if self.groups == 1 else bases

    @property
    def dim(self) -> int | list[int]:
        """Dimension r of the span (the numerical rank of G); a list per group with groups."""
        dims = [b.shape[1] for b in self._bases()]
        return dims[0] if self.groups == 1 else dims

    def complement_projector(self) -> Tensor:
        """P⊥ = I − B Bᵀ, the projector onto the orthogonal complement of the span:
        (fan_in, fan_in), or stacked (g, fan_in, fan_in) with groups; float64."""
        return self._squeeze(self._projector().clone())

    def _projector(self) -> Tensor:
        """The cached P⊥ of every group, (g, F, F); callers must not modify it."""
        if "proj" not in self._cache:
            eye = torch.eye(self.fan_in, dtype=torch.float64, device=self._gram3().device)
            self._cache["proj"] = torch.stack([eye - b @ b.T for b in self._bases()])
        return self._cache["proj"]

    def __repr__(self) -> str:
        return (
            f"InputSpan({self.kind}, fan_in={self.fan_in}, groups={self.groups}, "
            f"n_seen={self.n_seen}, rtol={self.rtol})"
        )


def _pads(
    padding: str | tuple[int, ...], kernel: tuple[int, ...], dilation: tuple[int, ...]
) -> tuple[tuple[int, int], ...]:
    """(left, right) zero padding per spatial dim, as the conv applies it."""
    if padding == "valid":
        return tuple((0, 0) for _ in kernel)
    if padding == "same":  # torch: total d (k - 1), the extra one on the right
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    return tuple((p, p) for p in padding)


@dataclass(frozen=True)
class OrthogonalNorm:
    """How much of a weight lies outside the span of its layer's inputs.

    Attributes:
        per_channel: ‖W_o P⊥‖ for every output row o, (out_channels,) float64.
        total: ‖W P⊥‖_F.
        relative: total / ‖W‖_F (0 for a zero weight).
        complement_dim: fan_in − dim of the span (a list per group with groups).
    """

    per_channel: Tensor
    total: float
    relative: float
    complement_dim: int | list[int]


def orthogonal_weight_norm(weight: Tensor, span: InputSpan) -> OrthogonalNorm:
    """‖W P⊥‖ per output row and in total, P⊥ from `span` (SPAN-ORTH, see the module doc).

    The weight is reshaped to (out, fan_in) as the layer applies it; with groups g, the
    out/g rows of group j are projected with group j's P⊥. Computed in float64 on the span's
    device; `weight` is only read.

    Args:
        weight: the layer's weight, (out, in_features) or (out, C_in / g, *kernel).
        span: the `InputSpan` of the same layer.

    Raises:
        ValueError: `weight` does not fit the span's layer geometry.
    """
    expected = (span.out_channels, span.in_channels // span.groups, *span.kernel_size)
    if tuple(weight.shape) != expected:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} does not match the span's layer, "
            f"which expects {expected}"
        )
    proj = span._projector()  # (g, F, F)
    w = weight.detach().to(device=proj.device, dtype=torch.float64)
    w = w.reshape(span.groups, span.out_channels // span.groups, span.fan_in)  # (g, O/g, F)
    per_channel = (w @ proj).norm(dim=2).reshape(-1)  # (O,)  (P⊥ is symmetric)
    total = float(per_channel.norm())
    w_norm = float(w.norm())
    dims = [span.fan_in - d for d in ([span.dim] if span.groups == 1 else span.dim)]
    return OrthogonalNorm(
        per_channel=per_channel,
        total=total,
        relative=total / w_norm if w_norm > 0 else 0.0,
        complement_dim=dims[0] if span.groups == 1 else dims,
    )
