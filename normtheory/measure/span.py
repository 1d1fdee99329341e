"""The span of a layer's inputs and the part of its weight orthogonal to it (SPAN-ORTH).

For a layer y = W x (a convolution applies W to the im2col patches x of its input), the
gradient of any loss is a sum of outer products with the inputs, ∇_W L = Σ_n δ_n x_nᵀ, so each
row of ∇_W L lies in S = span{x_n : all inputs seen}. With P⊥ = I − B Bᵀ the projector onto
S⊥ (B an orthonormal basis of S), SGD, with or without momentum, never changes W P⊥; plain SGD
with coupled weight decay λ and step η multiplies it by (1 − ηλ) per step, so
W_t P⊥ = (1 − ηλ)^t W_0 P⊥. Adaptive optimizers (Adam) rescale coordinates and leave S, so
they create orthogonal weight norm (Liu et al. 2021, "Implicit biases of SGD on
BN-DNNs" / "Weight rescaling"; CLAIMS.md: SPAN-ORTH).

`InputSpan` tracks S incrementally: per group it keeps an orthogonal matrix Q = [B | C]
(fan_in × fan_in, float64), B a basis of the span seen so far and C of its complement, and the
Gram of the inputs in these coordinates, Qᵀ G Q. A batch X is projected onto Q (for a
conv, by a float64 convolution with the columns of Q as filters: no im2col matrix); only when
its energy outside the span, ‖X C‖²_F, exceeds rtol · ‖X‖²_F are the eigenvectors of the k × k
complement Gram (X C)ᵀ(X C) whose eigenvalues exceed rtol · ‖X‖²_F moved from C to B. Since
range(G + XᵀX) = S ⊕ C · rowspace(X C), this is the range of the full Gram without forming it.
Once a group's span is the whole fan-in (proven full: r = fan_in) its inputs are no longer
looked at. Memory per layer and group: Q and Qᵀ G Q, 2 · fan_in² float64, plus one
chunk of projected inputs (M × fan_in, ≤ 128 MiB) during an update. `orthogonal_weight_norm`
measures ‖W P⊥‖ = ‖W C‖ per output row and in total.

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
    """Streaming tracker of the span of the inputs a weight layer has seen.

    Linear: the inputs are the vectors x (in_features,), any leading dims flattened. Conv1d /
    Conv2d: the inputs are the patches the kernel is applied to, unfolded exactly as the conv
    does (stride, zero padding — padded zeros are part of the patches —, dilation); with
    ``groups = g`` each group has its own fan-in C_in/g · prod(kernel) and its own span.
    Patch entries are ordered as ``weight.reshape(out, -1)`` orders the fan-in:
    channel-major, then kernel positions.

    Example::

        span = InputSpan(model.conv1)
        for x in batches:
            span.update(x)                       # the conv's inputs (N, C, H, W)
        orthogonal_weight_norm(model.conv1.weight, span).relative

    Numerical tolerance: a batch X (M inputs, as rows) adds the directions of its energy
    outside the span whose energy exceeds ``rtol · ‖X‖²_F`` — relative to the batch's own
    energy (the trace of its Gram, between its largest eigenvalue and fan_in times it). The
    default 1e-10 cuts directions whose singular value is below 1e-5 of the batch's norm.
    float32 inputs that lie exactly in a subspace (repeated channels, constant pixels, a
    rank-r embedding rounded to float32) leave ≲ 1e-15 of their energy outside it, while a
    rare input direction (a pixel lit in a handful of images) can hold 1e-7 of it and still be
    moved by SGD: a larger rtol would call it orthogonal.

    Args:
        layer: an `nn.Linear`, `nn.Conv1d` or `nn.Conv2d` (subclasses such as the WS layers
            included); only its geometry is kept, not the module.
        rtol: the relative energy tolerance above.
        skip_full: once a group's span is the whole fan-in, stop looking at its inputs (they
            cannot add anything); `gram` is then unavailable. False keeps the Gram exact.

    Raises:
        NotImplementedError: a conv with ``padding_mode`` other than ``"zeros"``.
        TypeError: another kind of layer.
    """

    def __init__(
        self,
        layer: nn.Linear | nn.Conv1d | nn.Conv2d,
        *,
        rtol: float = 1e-10,
        skip_full: bool = True,
    ) -> None:
        if not (isinstance(rtol, int | float) and 0 <= rtol < 1):
            raise ValueError(f"rtol must be a float in [0, 1), got {rtol!r}")
        self.rtol = float(rtol)
        self.skip_full = bool(skip_full)
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
        self._q: Tensor | None = None  # (g, F, F) float64, columns [B | C] per group
        self._rank = [0] * self.groups  # r per group: Q[j][:, :r] spans the inputs seen
        self._gram_q: Tensor | None = None  # (g, F, F) float64: Qᵀ G Q per group
        self._cache: dict[str, object] = {}  # filters / projector of the current Q
        self.n_seen = 0  # input vectors (rows / patches) per group
        self.n_examples = 0  # examples seen (for Linear: input vectors, leading dims flattened)
        self.n_skipped = 0  # input vectors not looked at: the span was already full

    # -- accumulation -------------------------------------------------------------------------

    @property
    def full(self) -> bool:
        """Every group's span is the whole fan-in (proven by the inputs seen)."""
        return all(r == self.fan_in for r in self._rank)

    def update(self, x: Tensor) -> "InputSpan":
        """Adds the inputs `x` of the layer: (..., in_features) for Linear, (N, C, L) or
        (C, L) for Conv1d, (N, C, H, W) or (C, H, W) for Conv2d. Returns self.

        Works in chunks of examples, so the float64 projected inputs stay under ~128 MiB.
        Cost O(M · fan_in²) flops for M input vectors (a float64 conv for a conv layer), none
        once the span is full and `skip_full`."""
        x = self._batched(x.detach())  # (N, in_features) or (N, C, *spatial)
        if self._q is None:
            eye = torch.eye(self.fan_in, dtype=torch.float64, device=x.device)
            self._q = eye.repeat(self.groups, 1, 1)
            self._rank = [0] * self.groups
            self._gram_q = torch.zeros_like(self._q)
            self._cache = {}
        seen = x.shape[0] * self._positions(x)
        self.n_seen += seen
        self.n_examples += x.shape[0]
        if self.skip_full and self.full:
            self.n_skipped += seen
            return self
        per_example = self.groups * self.fan_in * self._positions(x)
        for chunk in x.split(max(1, _CHUNK // max(per_example, 1))):
            coords = self._coords(chunk)  # (g, M, F): the inputs in the coordinates Q
            for j in range(self.groups):
                self._absorb(j, coords[j])
        return self

    def _absorb(self, j: int, y: Tensor) -> None:
        """Adds a chunk of group j's inputs, y = X Q_j (M, F), to the span and Qᵀ G Q."""
        r = self._rank[j]
        gram = y.T @ y  # (F, F): the chunk's Gram in the coordinates Q
        self._gram_q[j] += gram
        if r == self.fan_in:
            return
        threshold = self.rtol * float(gram.trace())  # rtol · ‖X‖²_F (Q is orthogonal)
        outside = gram[r:, r:]  # (k, k): (X C)ᵀ (X C)
        if float(outside.trace()) <= threshold:  # no direction can hold more than all
            return
        mu, v = torch.linalg.eigh(outside)  # (k,), (k, k) ascending
        mu, v = mu.flip(0), v.flip(1)
        new = int((mu > threshold).sum())
        if new == 0:
            return
        # Rotate C by v (its first `new` columns join B) and Qᵀ G Q with it.
        self._q[j, :, r:] = self._q[j, :, r:] @ v
        self._gram_q[j, :, r:] = self._gram_q[j, :, r:] @ v
        self._gram_q[j, r:, :] = v.T @ self._gram_q[j, r:, :]
        self._rank[j] = r + new
        self._cache = {}

    def _positions(self, x: Tensor) -> int:
        """Output positions of the layer for a batched input `x` (1 for Linear)."""
        if self.kind == "linear":
            return 1
        sizes = x.shape[2:]
        out = [
            (n + left + right - d * (k - 1) - 1) // s + 1
            for n, (left, right), k, d, s in zip(
                sizes, self.pads, self.kernel_size, self.dilation, self.stride
            )
        ]
        return math.prod(out)

    def _coords(self, x: Tensor) -> Tensor:
        """The input vectors of a batch `x` in the coordinates Q: (g, M, F) float64, X Q."""
        if not any(self._rank):  # Q is still I: the coordinates are the patches (im2col)
            return self._patches(x)
        x = x.to(torch.float64)
        if self.kind == "linear":
            return (x @ self._q[0])[None]  # (1, N, F)
        if "filters" not in self._cache:  # column i of Q_j as a filter (C/g, *kernel)
            shape = (self.groups * self.fan_in, self.in_channels // self.groups, *self.kernel_size)
            self._cache["filters"] = self._q.transpose(1, 2).reshape(shape)
        x = F.pad(x, [p for pair in reversed(self.pads) for p in pair])
        conv = F.conv1d if self.kind == "conv1d" else F.conv2d
        y = conv(x, self._cache["filters"], None, self.stride, 0, self.dilation, self.groups)
        y = y.reshape(x.shape[0], self.groups, self.fan_in, -1)  # (N, g, F, L_out)
        return y.permute(1, 0, 3, 2).reshape(self.groups, -1, self.fan_in)  # (g, M, F)

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
        """The input vectors of a batch `x`, grouped: (g, M, fan_in) in float64 (im2col)."""
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

    def _squeeze(self, t: Tensor) -> Tensor:
        return t[0] if self.groups == 1 else t

    def _q3(self) -> Tensor:
        if self._q is None:  # nothing seen: the span is {0}, the complement everything
            return torch.eye(self.fan_in, dtype=torch.float64).repeat(self.groups, 1, 1)
        return self._q

    def gram(self) -> Tensor:
        """G = Σ x xᵀ in float64: (fan_in, fan_in), or (g, fan_in, fan_in) with groups.

        Kept as Qᵀ G Q and rotated back, Q (Qᵀ G Q) Qᵀ.

        Raises:
            RuntimeError: inputs were skipped because the span was full (`skip_full`)."""
        if self.n_skipped:
            raise RuntimeError(
                f"the span became full (all {self.fan_in} dims) and {self.n_skipped} later "
                "input vectors were not looked at, so their Gram is unknown; build the "
                "InputSpan with skip_full=False to keep it"
            )
        if self._q is None:
            return self._squeeze(torch.zeros_like(self._q3()))
        return self._squeeze(self._q @ self._gram_q @ self._q.transpose(1, 2))

    def _bases(self) -> list[Tensor]:
        q = self._q3()
        return [q[j, :, :r] for j, r in enumerate(self._rank)]

    def _complements(self) -> list[Tensor]:
        """An orthonormal basis C of the complement of every group's span, (F, k) each."""
        q = self._q3()
        return [q[j, :, r:] for j, r in enumerate(self._rank)]

    def basis(self) -> Tensor | list[Tensor]:
        """Orthonormal basis of the span as columns, (fan_in, r). With groups, a list with
        one (fan_in, r_j) per group."""
        bases = [b.clone() for b in self._bases()]
        return bases[0] if self.groups == 1 else bases

    @property
    def dim(self) -> int | list[int]:
        """Dimension r of the span; a list per group with groups."""
        return self._rank[0] if self.groups == 1 else list(self._rank)

    def complement_projector(self) -> Tensor:
        """P⊥ = C Cᵀ = I − B Bᵀ, the projector onto the orthogonal complement of the span:
        (fan_in, fan_in), or stacked (g, fan_in, fan_in) with groups; float64."""
        return self._squeeze(self._projector().clone())

    def _projector(self) -> Tensor:
        """The cached P⊥ of every group, (g, F, F); callers must not modify it."""
        if "proj" not in self._cache:
            self._cache["proj"] = torch.stack([c @ c.T for c in self._complements()])
        return self._cache["proj"]

    def __repr__(self) -> str:
        return (
            f"InputSpan({self.kind}, fan_in={self.fan_in}, groups={self.groups}, "
            f"dim={self.dim}, n_seen={self.n_seen}, rtol={self.rtol})"
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
    out/g rows of group j are projected with group j's P⊥: ‖W_o P⊥‖ = ‖W_o C‖, C the span's
    orthonormal complement basis. Computed in float64 on the span's device; `weight` is only
    read.

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
    complements = span._complements()  # (F, k_j) per group
    device = complements[0].device
    w = weight.detach().to(device=device, dtype=torch.float64)
    w = w.reshape(span.groups, span.out_channels // span.groups, span.fan_in)  # (g, O/g, F)
    per_channel = torch.cat([(w[j] @ c).norm(dim=1) for j, c in enumerate(complements)])  # (O,)
    total = float(per_channel.norm())
    w_norm = float(w.norm())
    dims = [span.fan_in - d for d in ([span.dim] if span.groups == 1 else span.dim)]
    return OrthogonalNorm(
        per_channel=per_channel,
        total=total,
        relative=total / w_norm if w_norm > 0 else 0.0,
        complement_dim=dims[0] if span.groups == 1 else dims,
    )
