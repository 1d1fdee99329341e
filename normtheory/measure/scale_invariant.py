"""Which weights of a model are scale-invariant, found from its structure (SI-ORTH, SI-GROWTH).

A weight w is scale-invariant when L(c w) = L(w) for every c > 0, e.g. a weight feeding
train-mode BatchNorm with ε = 0; the identities that then hold are in
`normtheory.measure.weights`. `find_scale_invariant` reads which weight layers feed which norm
from the autograd graph of one forward pass.
"""

import math
from collections.abc import Callable
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

from normtheory.batches import call_model, detached, tensors
from normtheory.norms import (
    BatchGroupNorm,
    FilterResponseNorm,
    GroupNorm,
    RMSNorm,
    TokenNorm,
    WSConv1d,
    WSConv2d,
    WSLinear,
)
from normtheory.state import preserved_rng

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


_TRAILING = (nn.LayerNorm, nn.RMSNorm)  # torch's: statistics over the last k dims


_NORMS = (
    _BatchNorm,
    _InstanceNorm,
    FilterResponseNorm,
    BatchGroupNorm,
    GroupNorm,
    RMSNorm,
    TokenNorm,
    nn.GroupNorm,
    *_TRAILING,
)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORMS)


def _rows_normalized_together(norm: nn.Module, x: object, producer: nn.Module) -> bool:
    """For torch's LayerNorm / RMSNorm: whether the producer's output rows (the last dim of a
    Linear's output, dim 1 of a conv's) lie inside the normalized trailing dims."""
    if not isinstance(x, Tensor):
        return True
    row_axis = x.ndim - 1 if isinstance(producer, nn.Linear) else 1
    return row_axis >= x.ndim - len(norm.normalized_shape)


def _norm_blocks(norm: nn.Module, x: object = None, producer: nn.Module | None = None) -> int:
    """Into how many runs of consecutive output rows of `producer` (the weight layer feeding
    the norm, whose output `x` the norm receives) the norm splits them, each normalized by
    statistics of its own (a common positive scale of one run leaves the output unchanged)."""
    if isinstance(norm, TokenNorm):  # the inner norm sees (N·T, d): d = the producer's rows
        return _norm_blocks(norm.norm)
    if isinstance(norm, _BatchNorm | _InstanceNorm | FilterResponseNorm):
        return norm.num_features  # BN, Ghost BN (per channel over a batch), IN, FRN (per example)
    if isinstance(norm, BatchGroupNorm | GroupNorm):  # also LayerNorm (G = 1), InstanceNorm
        return norm.groups  # G groups of C/G consecutive channels
    if isinstance(norm, RMSNorm):
        return 1  # one statistic over C x spatial
    if isinstance(norm, nn.GroupNorm):
        return norm.num_groups
    # torch's LayerNorm / RMSNorm over the trailing dims: all rows together if they are inside
    # them (a transformer's per-token norm after a Linear), else each slice lies in one row.
    together = producer is None or _rows_normalized_together(norm, x, producer)
    return 1 if together else _rows(producer)


def _removes_channel_bias(norm: nn.Module, x: object = None, producer=None) -> bool:
    """Whether the norm subtracts a per-channel mean, so a bias before it has no effect."""
    if isinstance(norm, TokenNorm):
        return _removes_channel_bias(norm.norm)
    if isinstance(norm, _BatchNorm | _InstanceNorm):
        return True
    if isinstance(norm, BatchGroupNorm | GroupNorm):
        return norm.groups == norm.num_features
    if isinstance(norm, nn.LayerNorm):  # subtracts each slice's mean: per row if inside one
        return producer is not None and not _rows_normalized_together(norm, x, producer)
    return isinstance(norm, nn.GroupNorm) and norm.num_groups == norm.num_channels


@dataclass
class _Call:
    module: nn.Module
    input: object
    output: object
    node: object  # grad_fn of the output when the call was made


Forward = Callable[[nn.Module], object]


def find_scale_invariant(
    model: nn.Module, example_input: object = None, *, forward: Forward | None = None
) -> dict[str, str]:
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
      group, or an RMSNorm (in fact a common scale of the rows of each group suffices;
      `invariant_metric` uses those groups).

    torch's own norms count too: ``nn.BatchNorm*d``, ``nn.InstanceNorm*d``, ``nn.GroupNorm``,
    and ``nn.LayerNorm`` / ``nn.RMSNorm`` over the trailing dims: a Linear feeding a per-token
    LayerNorm or RMSNorm (a transformer's, (N, T, d) with ``normalized_shape=(d,)``) is
    ``"whole"``: every token's features are scaled together, and each token is normalized on
    its own (per-token scale invariance); when the normalized dims leave out the rows (a conv
    with ``nn.LayerNorm([H, W])``) each row is its own block, ``"per_channel"``. A registry
    norm applied token-wise (`normtheory.norms.TokenNorm`, as `build_model`'s transformer
    does) counts as its inner norm. LayerNorm removes a bias only when each normalized slice
    lies in one row; RMSNorm never does.

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
        model: the model; `model.config["in_shape"]` (as `build_model` sets; with
            ``vocab_size``, token ids) gives the probe shape when `example_input` is None.
        example_input: the model's input for one batch, of any structure: a tensor is called
            as ``model(x)``, a dict as ``model(**x)``, a tuple as ``model(*x)``
            (`normtheory.batches.call_model`); only shapes, dtypes and devices matter.
        forward: instead of `example_input`, ``forward(model) -> output or loss``, one forward
            pass of any form (e.g. ``lambda m: loss_fn(m, batch)``); the paths are read from
            its result. The global RNG is restored after it.

    Returns:
        ``{module name: "per_channel" | "whole"}``, in module order.
    """
    return {
        name: PER_CHANNEL if blocks == rows else WHOLE
        for name, (blocks, rows, _) in _invariant_blocks(model, example_input, forward).items()
    }


def _invariant_blocks(
    model: nn.Module, example_input: object = None, forward: Forward | None = None
) -> dict[str, tuple[int, int, bool]]:
    """{module name: (blocks, rows, standardized)} for each scale-invariant weight layer: its
    rows (output channels) split into `blocks` runs of consecutive rows, each invariant under
    one common positive scale; `standardized` for a WS layer (also invariant under adding a
    constant to a row). See `find_scale_invariant` for the rules."""
    if forward is None:
        probe = _probe_input(model, example_input)
        forward = lambda m: call_model(m, probe)  # noqa: E731
    names = {m: n for n, m in reversed(list(model.named_modules()))}  # first name wins
    calls: list[_Call] = []

    def record(module: nn.Module, args: tuple, output: object) -> None:
        node = output.grad_fn if isinstance(output, Tensor) else None
        calls.append(_Call(module, args[0] if args else None, output, node))

    # Leaves, and the norm wrappers (`TokenNorm`), whose inner norm sees a reshaped input.
    watched = [m for m in model.modules() if not list(m.children()) or isinstance(m, TokenNorm)]
    modes = {m: m.training for m in model.modules()}
    handles = [m.register_forward_hook(record) for m in watched]
    try:
        model.eval()
        with torch.enable_grad(), preserved_rng():
            out = forward(model)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.train(mode)
    root = _root(out)

    # One verdict (number of invariant row blocks) per call of a weight layer; a call that
    # feeds no norm stays None.
    verdicts: dict[int, int | None] = {}
    for i, call in enumerate(calls):
        if isinstance(call.module, _WEIGHT_LAYERS):
            standardized = isinstance(call.module, _STANDARDIZED)
            verdicts[i] = _rows(call.module) if standardized else None
        if not _is_norm(call.module):
            continue
        j, direct = _producer(calls, i)
        if j is None or isinstance(calls[j].module, _STANDARDIZED):
            continue
        producer = calls[j].module
        blocks = _norm_blocks(call.module, call.input, producer)
        has_bias = getattr(producer, "bias", None) is not None
        removes = _removes_channel_bias(call.module, call.input, producer)
        bias_ok = not has_bias or (direct and removes)
        ok = bias_ok and _only_path(root, calls[j].node, call.node)
        verdicts[j] = blocks if ok and _rows(producer) % blocks == 0 else None
    per_module: dict[nn.Module, list[int | None]] = {}
    for j, blocks in verdicts.items():
        per_module.setdefault(calls[j].module, []).append(blocks)
    # A layer called several times is invariant under the scales common to all its calls: runs
    # of rows that are unions of every call's runs, i.e. gcd(blocks) equal runs.
    result = {
        names[m]: (math.gcd(*blocks), _rows(m), isinstance(m, _STANDARDIZED))
        for m, blocks in per_module.items()
        if None not in blocks
    }
    order = [n for n, _ in model.named_modules()]
    return {n: result[n] for n in order if n in result}


def _rows(layer: nn.Module) -> int:
    return layer.weight.shape[0]


def _root(out: object) -> object:
    """The autograd node every output depends on: the output's, or for a structured output
    (a dict, a Hugging Face ``ModelOutput``) a sum over its floating tensors."""
    if isinstance(out, Tensor):
        return out.grad_fn
    parts = [t.sum() for t in tensors(out) if t.is_floating_point() and t.grad_fn is not None]
    return torch.stack(parts).sum().grad_fn if parts else None


def _probe_input(model: nn.Module, example_input: object) -> object:
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    if example_input is not None:
        if not isinstance(example_input, Tensor):
            return detached(example_input)
        x = example_input.detach().clone()
        return x.requires_grad_(True) if x.is_floating_point() else x
    config = getattr(model, "config", {})
    shape = config.get("in_shape") if isinstance(config, dict) else None
    if shape is None:
        raise ValueError(
            "find_scale_invariant needs example_input for a model without config['in_shape']"
        )
    gen = torch.Generator().manual_seed(0)  # own generator: the global RNG stays untouched
    if config.get("vocab_size"):  # a token model: ids, not features
        return torch.randint(config["vocab_size"], (4, *shape), generator=gen).to(device)
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


def invariant_metric(
    model: nn.Module, example_input: object = None, *, forward: Forward | None = None
) -> dict[str, Tensor]:
    """The per-entry scale D of every scale-invariant weight, for curvature in the matched metric.

    Groups: the finest sets of weights that one common positive scale leaves the loss unchanged
    under (train mode, norms' ε = 0), derived per norm from its statistics:

    - a WS layer (`WSLinear`, `WSConv*d`): each row w_o (output channel) on its own, since
      Ŵ_o = (w_o − μ_o) / σ_o; it is also unchanged by w_o -> w_o + t·1, so its size is the
      centred norm ‖w_o − μ_o 1‖ (= √fan_in · σ_o), which neither symmetry moves;
    - a weight feeding BN, Ghost BN, IN or FRN (statistics per channel): each row on its own;
    - a weight feeding Group Norm or Batch-Group Norm with G groups of C/G consecutive channels
      (Layer Norm: G = 1): the C/G rows of each group together (each group is normalized by
      its own mean and variance), size ‖W_g‖ (Frobenius); RMSNorm and a per-token LayerNorm
      or RMSNorm (torch's, `TokenNorm`): all rows together;
    - everything else (the head, the norms' γ and β, biases): no group, D = 1.

    For a group g of r_g rows, D = ‖w_g‖ / √r_g on all its entries (the root-mean-square row
    norm). Why these quantities are scale-invariant: if L(c w_g) = L(w_g) for all c > 0, then
    ∇_g L(c w) = ∇_g L(w) / c and the Hessian blocks scale as H_gg / c², H_gh / c; rescaling
    group g by c multiplies D on g by c, so D H D and D ∇L are unchanged. They are the raw
    Hessian and gradient at the canonical point ŵ = D⁻¹ w of the same function (every group
    rescaled so its rows have RMS norm 1; a WS row also centred): H(ŵ) = D H(w) D. So the
    curvature is compared at matched weight norms, one unit-norm filter per output channel, for
    any net. Groups must be exactly the invariant sets: a coarser one is not invariant under
    all the symmetries, and a finer one (e.g. per row under GN) gives a D H D that is
    invariant too but is the Hessian at no point of the same function.

    Args:
        model: the network; groups come from `find_scale_invariant`'s graph analysis.
        example_input, forward: one batch the model accepts, or one forward pass (see
            `find_scale_invariant`).

    Returns:
        ``{parameter name: D}`` with D shaped like the parameter (detached, same dtype and
        device), for the scale-invariant weights only; absent parameters have D = 1.
    """
    out = {}
    for name, (blocks, rows, standardized) in _invariant_blocks(
        model, example_input, forward
    ).items():
        weight = model.get_submodule(name).weight.detach()
        flat = weight.reshape(rows, -1)  # (rows, fan_in)
        if standardized:
            flat = flat - flat.mean(dim=1, keepdim=True)
        per_block = flat.reshape(blocks, -1).norm(dim=1) / math.sqrt(rows // blocks)  # (blocks,)
        scale = per_block.repeat_interleave(rows // blocks)  # (rows,)
        out[f"{name}.weight" if name else "weight"] = (
            scale[:, None].expand_as(flat).reshape(weight.shape)
        )
    return out
