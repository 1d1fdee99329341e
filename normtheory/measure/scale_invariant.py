"""Which weights of a model are scale-invariant, found from its structure (SI-ORTH, SI-GROWTH).

A weight w is scale-invariant when L(c w) = L(w) for every c > 0, e.g. a weight feeding
train-mode BatchNorm with ε = 0; the identities that then hold are in
`normtheory.measure.weights`. `find_scale_invariant` reads which weight layers feed which norm
from the autograd graph of one forward pass.
"""

from dataclasses import dataclass

import torch
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
