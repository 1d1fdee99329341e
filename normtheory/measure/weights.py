"""Scale invariance of weights feeding normalization layers: SI-ORTH, SI-GROWTH (CLAIMS.md).

A weight w is scale-invariant when L(c w) = L(w) for every c > 0, e.g. a weight feeding
train-mode BatchNorm with ε = 0. Then (Liu et al. 2021; van Laarhoven 2017)

    ⟨w, ∇L(w)⟩ = 0                                    (SI-ORTH, Euler's theorem)
    ‖w_{t+1}‖² = (1 − ηλ)² ‖w_t‖² + η² ‖g_t‖²          (SI-GROWTH, SGD with coupled decay λ)

since SGD steps w_{t+1} = (1 − ηλ) w_t − η g_t and the cross term 2η(1 − ηλ)⟨w_t, g_t⟩
vanishes; g_t is the loss gradient without the decay term. The step changes the direction
of w by about η‖g‖/‖w‖, so η/‖w‖² is the effective learning rate.

`find_scale_invariant` finds such weights in a model from its structure.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.modules.instancenorm import _InstanceNorm
from torch.nn.modules.pooling import (
    _AdaptiveAvgPoolNd,
    _AdaptiveMaxPoolNd,
    _AvgPoolNd,
    _MaxPoolNd,
)

from normtheory.measure.span import InputSpan
from normtheory.norms import (
    BatchGroupNorm,
    FilterResponseNorm,
    GroupNorm,
    WSConv1d,
    WSConv2d,
    WSLinear,
)

PER_CHANNEL, WHOLE = "per_channel", "whole"

_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_STANDARDIZED = (WSLinear, WSConv1d, WSConv2d)
# Per-channel, positively homogeneous maps, f(c z) = c f(z) for c > 0, channel by channel:
# a scale of W's rows passes through them unchanged to the norm.
_PASS_THROUGH = (
    nn.Identity,
    nn.ReLU,
    nn.LeakyReLU,
    _DropoutNd,
    _MaxPoolNd,
    _AvgPoolNd,
    _AdaptiveAvgPoolNd,
    _AdaptiveMaxPoolNd,
)


def _rows(t: Tensor) -> Tensor:
    return t.detach().reshape(t.shape[0], -1)  # (out, fan_in)


def _safe_div(num: Tensor, denom: Tensor) -> Tensor:
    """num / denom with 0 where denom == 0 (a zero vector is orthogonal to everything)."""
    return torch.where(denom > 0, num / torch.where(denom > 0, denom, 1), 0)


@dataclass(frozen=True)
class ScaleInvarianceCosine:
    """cos(w, ∇L) = ⟨w, ∇L⟩ / (‖w‖ ‖∇L‖), zero for a scale-invariant weight (SI-ORTH).

    Attributes:
        per_channel: the cosine of every output row, (out,).
        total: the cosine of the whole tensors.
    """

    per_channel: Tensor
    total: float


def scale_invariance_cosine(weight: Tensor, grad: Tensor) -> ScaleInvarianceCosine:
    """⟨w, ∇L⟩ / (‖w‖ ‖∇L‖) per output channel (row of ``weight.reshape(out, -1)``) and
    overall; 0 where either vector is 0. Signed: a weight decay gradient gives +1.

    Raises:
        ValueError: `weight` and `grad` differ in shape.
    """
    if weight.shape != grad.shape:
        raise ValueError(
            f"weight and grad must have the same shape, got {tuple(weight.shape)} "
            f"and {tuple(grad.shape)}"
        )
    w, g = _rows(weight).double(), _rows(grad).double()  # (out, fan_in)
    per_channel = _safe_div((w * g).sum(1), w.norm(dim=1) * g.norm(dim=1))
    total = _safe_div((w * g).sum(), w.norm() * g.norm())
    return ScaleInvarianceCosine(per_channel=per_channel, total=float(total))


def growth_residual(
    w_prev: Tensor,
    w_next: Tensor,
    grad: Tensor,
    lr: float,
    weight_decay: float = 0.0,
    *,
    relative: bool = False,
    per_channel: bool = False,
) -> float | Tensor:
    """SI-GROWTH residual ‖w_{t+1}‖² − ((1 − ηλ)² ‖w_t‖² + η² ‖g_t‖²), computed in float64.

    Zero (to rounding) for a scale-invariant weight after one step of plain SGD,
    w_{t+1} = w_t − η (g_t + λ w_t) (``torch.optim.SGD(lr=η, weight_decay=λ)``, no
    momentum); otherwise it equals −2η(1 − ηλ)⟨w_t, g_t⟩.

    Args:
        w_prev: w_t, the weight before the step.
        w_next: w_{t+1}, the weight after it.
        grad: g_t, the gradient of the loss at w_t WITHOUT the decay term.
        lr: η.
        weight_decay: λ, the coupled decay of the step.
        relative: divide by ‖w_{t+1}‖² (by ‖w_{t+1,o}‖² per row with `per_channel`).
        per_channel: the residual of every output row w_o (``reshape(out, -1)``), (out,)
            float64: the identity per row, which holds for per-channel invariance (BN).
    """
    w0, w1, g = (_rows(t).double() for t in (w_prev, w_next, grad))  # (out, fan_in)
    next_sq = w1.square().sum(1)
    predicted = (1 - lr * weight_decay) ** 2 * w0.square().sum(1) + lr**2 * g.square().sum(1)
    if not per_channel:
        next_sq, predicted = next_sq.sum(), predicted.sum()
    residual = next_sq - predicted
    if relative:
        inf = torch.full_like(residual, math.inf).copysign(residual)
        residual = torch.where(next_sq > 0, residual / torch.where(next_sq > 0, next_sq, 1), inf)
    return residual if per_channel else float(residual)


def effective_lr(weight: Tensor, lr: float, *, per_channel: bool = False) -> float | Tensor:
    """Effective learning rate η / ‖w‖² of a scale-invariant weight; per output row, (out,),
    with `per_channel` (the right one for per-channel invariance, e.g. BN)."""
    if per_channel:
        return lr / _rows(weight).double().square().sum(1)
    return lr / float(weight.detach().double().square().sum())


def same_sign_fraction(layer: nn.Module, inputs: Tensor) -> float:
    """IC-SIGN: how one-signed the per-sample weight-gradient rows of `layer` are.

    For y = W x the per-sample gradient is ∇_W ℓ = δ xᵀ, so its row o is δ_o x: one common sign
    flip of the input vector. (A conv's per-sample gradient is the sum over output positions p of
    δ_{o,p} x_pᵀ; its rows per position are measured.) For every input vector x (a row of the
    layer's input, or an im2col patch) this takes the fraction of its non-zero entries that
    share the majority sign, max(#x > 0, #x < 0) / #x ≠ 0, and averages over vectors. It is 1.0
    when the inputs are non-negative (ReLU output with no norm after it), so every entry of a
    gradient row moves the same way, and close to 0.5 for zero-mean inputs of many entries
    (Chen et al. 2019, the IC layer). Vectors with no non-zero entry are left out (NaN if all).

    Args:
        layer: an `nn.Linear`, `nn.Conv1d` or `nn.Conv2d` (only its geometry is used).
        inputs: a batch of the layer's inputs.
    """
    span = InputSpan(layer)  # checks the layer type and the input shape
    x = span._batched(inputs.detach())
    pos, neg = _patch_counts(layer, span, x > 0), _patch_counts(layer, span, x < 0)
    nonzero = pos + neg
    keep = nonzero > 0
    if not keep.any():
        return math.nan
    return float((torch.maximum(pos, neg)[keep].double() / nonzero[keep]).mean())


def _patch_counts(layer: nn.Module, span: InputSpan, mask: Tensor) -> Tensor:
    """How many entries of each input vector (each im2col patch for a conv) `mask` marks: a
    convolution of the indicator with an all-ones kernel of the layer's geometry."""
    ind = mask.to(torch.float32)
    if span.kind == "linear":
        return ind.sum(-1)
    ones = torch.ones(
        span.groups, span.in_channels // span.groups, *span.kernel_size, device=ind.device
    )
    conv = F.conv1d if span.kind == "conv1d" else F.conv2d
    return conv(
        ind,
        ones,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=span.groups,
    ).round()


# -- finding the scale-invariant weights -----------------------------------------------------


def _norm_kind(norm: nn.Module) -> str | None:
    """The invariance a norm gives the weight feeding it, None if it is not a norm we know."""
    if isinstance(norm, _BatchNorm | _InstanceNorm | FilterResponseNorm):
        return PER_CHANNEL  # BN, Ghost BN (per channel over a batch), IN, FRN (per example)
    if isinstance(norm, BatchGroupNorm | GroupNorm):  # also LayerNorm, InstanceNorm
        return PER_CHANNEL if norm.groups == norm.num_features else WHOLE
    if isinstance(norm, nn.GroupNorm):
        return PER_CHANNEL if norm.num_groups == norm.num_channels else WHOLE
    return None


def _removes_channel_bias(norm: nn.Module) -> bool:
    """Whether the norm subtracts a per-channel mean, so a bias before it has no effect."""
    if isinstance(norm, _BatchNorm | _InstanceNorm):
        return True
    if isinstance(norm, BatchGroupNorm | GroupNorm):
        return norm.groups == norm.num_features
    return isinstance(norm, nn.GroupNorm) and norm.num_groups == norm.num_channels


@dataclass
class _Call:
    module: nn.Module
    input: object
    output: object
    node: object  # grad_fn of the output when the call was made


def find_scale_invariant(model: nn.Module, example_input: Tensor | None = None) -> dict[str, str]:
    """Names of the conv / linear modules whose weight is scale-invariant, with the kind.

    Kinds, for a weight W with rows w_o (``weight.reshape(out, -1)``), in train mode and with
    the norms' ε = 0 (a positive ε makes it approximate: close while the variance the norm
    sees is ≫ ε):

    - ``"per_channel"``: the output is unchanged by w_o -> c_o w_o for each row separately
      (every c_o > 0). W feeds a norm whose statistics are per channel: BatchNorm and Ghost
      BatchNorm (over the batch), InstanceNorm and FRN (per example), or a Group /
      Batch-Group Norm with one channel per group. Weight-standardized layers (`WSLinear`,
      `WSConv*d`) are always ``"per_channel"`` (with ``ws_eps`` -> 0), whatever follows them.
    - ``"whole"``: unchanged by W -> c W (one common c > 0) but not by a scale of single rows:
      W feeds a Group Norm, Layer Norm or Batch-Group Norm with more than one channel per
      group (in fact a common scale of the rows of each group suffices).

    "Feeds" means: the weight layer's output reaches the norm through per-channel, positively
    homogeneous modules only (nothing, ReLU, LeakyReLU, Dropout, pooling), and there is no
    other path from it to the model output (checked on the autograd graph of one forward).
    A bias on the weight layer breaks the invariance, unless the output goes straight into a
    norm that subtracts a per-channel mean (BN, Ghost BN, IN, GN with one channel per group).
    A layer called several times must qualify at every call. A head feeding the loss is
    never invariant, as it feeds no norm. ConvTranspose layers are not considered.

    The probe forward runs in eval mode with gradients on (graph structure only; restores each
    module's mode, touches no running statistics, RNG or ``.grad``).

    Args:
        model: the model; `model.config["in_shape"]` (as `build_model` sets) gives the probe
            shape when `example_input` is None.
        example_input: one batch the model accepts (only its shape, dtype and device matter).

    Returns:
        ``{module name: "per_channel" | "whole"}``, in module order.
    """
    probe = _probe_input(model, example_input)
    names = {m: n for n, m in reversed(list(model.named_modules()))}  # first name wins
    calls: list[_Call] = []

    def record(module: nn.Module, args: tuple, output: object) -> None:
        node = output.grad_fn if isinstance(output, Tensor) else None
        calls.append(_Call(module, args[0] if args else None, output, node))

    leaves = [m for m in model.modules() if not list(m.children())]
    modes = {m: m.training for m in model.modules()}
    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        model.eval()
        with torch.enable_grad():
            out = model(probe)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.train(mode)
    root = out.grad_fn if isinstance(out, Tensor) else None

    # One verdict per call of a weight layer; a call that feeds no norm stays None.
    verdicts: dict[int, str | None] = {}
    for i, call in enumerate(calls):
        if isinstance(call.module, _WEIGHT_LAYERS):
            verdicts[i] = PER_CHANNEL if isinstance(call.module, _STANDARDIZED) else None
        kind = _norm_kind(call.module)
        if kind is None:
            continue
        j, direct = _producer(calls, i)
        if j is None or isinstance(calls[j].module, _STANDARDIZED):
            continue
        has_bias = getattr(calls[j].module, "bias", None) is not None
        bias_ok = not has_bias or (direct and _removes_channel_bias(call.module))
        verdicts[j] = kind if bias_ok and _only_path(root, calls[j].node, call.node) else None
    per_module: dict[nn.Module, list[str | None]] = {}
    for j, kind in verdicts.items():
        per_module.setdefault(calls[j].module, []).append(kind)
    result = {
        names[m]: WHOLE if WHOLE in kinds else PER_CHANNEL
        for m, kinds in per_module.items()
        if None not in kinds
    }
    order = [n for n, _ in model.named_modules()]
    return {n: result[n] for n in order if n in result}


def _probe_input(model: nn.Module, example_input: Tensor | None) -> Tensor:
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    if example_input is not None:
        x = example_input.detach().clone()
        return x.requires_grad_(True) if x.is_floating_point() else x
    shape = getattr(model, "config", {}).get("in_shape")
    if shape is None:
        raise ValueError(
            "find_scale_invariant needs example_input for a model without config['in_shape']"
        )
    gen = torch.Generator().manual_seed(0)  # own generator: the global RNG stays untouched
    x = torch.randn(4, *shape, generator=gen, dtype=dtype).to(device)
    return x.requires_grad_(True)


def _producer(calls: list[_Call], i: int) -> tuple[int | None, bool]:
    """Index of the weight-layer call whose output reaches call i's input through pass-through
    modules only, and whether it reaches it directly (no module in between)."""
    x, direct = calls[i].input, True
    for j in range(i - 1, -1, -1):
        if calls[j].output is not x:
            continue
        if isinstance(calls[j].module, _WEIGHT_LAYERS):
            return j, direct
        if not isinstance(calls[j].module, _PASS_THROUGH):
            return None, False
        # Only nn.Identity keeps a bias intact: eval-mode Dropout returns its input too, but
        # scales it in training.
        direct = direct and isinstance(calls[j].module, nn.Identity)
        x = calls[j].input  # an identity returns its input: then keep looking further up
    return None, False


def _only_path(root: object, source: object, through: object) -> bool:
    """Whether every autograd path from `root` down to `source` passes through `through`
    (so the weight layer's output reaches the model output only via the norm)."""
    if root is None or source is None or through is None:
        return False
    seen, stack = {through}, [root]
    while stack:
        node = stack.pop()
        if node is source:
            return False
        if node in seen or node is None:
            continue
        seen.add(node)
        stack.extend(nxt for nxt, _ in node.next_functions)
    return True
