"""Batch dependence of the normalization layers: does an example's output depend on the others?

A batch-independent norm (FRN, GN, LN, IN; Singh & Krishnan 2019, "Filter Response
Normalization Layer", Sec. 1) computes each example's output from that example alone, so in
train mode the output of a kept example is the same whatever the rest of its batch holds. BN,
Ghost BN (within a ghost batch) and Batch-Group Norm pool statistics over examples, so it is not.
"""

import copy

import torch
from torch import Tensor, nn

from normtheory.checks import check_int
from normtheory.norms import norm_layers
from normtheory.state import preserved_rng


def batch_dependence(
    model: nn.Module,
    x: Tensor,
    x_other: Tensor,
    *,
    keep: int = 1,
    layers: dict[str, nn.Module] | None = None,
) -> dict[str, float]:
    """Largest relative change of the kept examples' norm outputs when the rest of the batch is
    replaced, per normalization layer.

    On a float64 deep copy of `model` in train mode (BN uses batch statistics; dropout is off,
    so the only path between examples is the norms), with batches a = x and
    b = [x[:keep]; x_other[keep:]] (the kept examples at the same positions), for each layer:

        change = max_{i < keep} ‖y_a[i] − y_b[i]‖ / ‖y_a[i]‖

    where y[i] is the layer's output for example i (0/0 counts as 0, c/0 as inf). It is 0 up to
    float64 rounding for a batch-independent norm and > 0 when the norm pools over examples (in
    that layer or upstream). `model`, its parameters, buffers, ``.grad``, modes and the RNG
    streams are untouched.

    Args:
        model: the network.
        x: a batch (N, ...).
        x_other: a batch of the same shape; its rows keep, keep+1, ... replace those of `x`.
        keep: the number of leading examples kept (1 <= keep < N).
        layers: names of the modules to watch, from ``model.named_modules()``; default every
            normalization layer (`normtheory.norms.norm_layers`).

    Returns:
        ``{layer name: change}``; empty when the model has no normalization layer.
    """
    keep = check_int("keep", keep)
    if x.shape != x_other.shape:
        raise ValueError(
            f"x and x_other must have the same shape, got {x.shape} and {x_other.shape}"
        )
    if not 1 <= keep < x.shape[0]:
        raise ValueError(f"keep must be in [1, {x.shape[0] - 1}] for a batch of {x.shape[0]}")
    names = list(norm_layers(model) if layers is None else layers)
    if not names:
        return {}
    twin = copy.deepcopy(model).double().train()
    for m in twin.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
    modules = dict(twin.named_modules())
    device = next(twin.parameters()).device
    x = x.detach().to(device, torch.float64)
    mixed = torch.cat([x[:keep], x_other.detach().to(device, torch.float64)[keep:]])
    outs: list[dict[str, Tensor]] = []  # per run: each layer's kept outputs at its first call

    def record(name: str):
        def hook(module, args, output):
            outs[-1].setdefault(name, output.detach()[:keep].reshape(keep, -1).clone())

        return hook

    handles = [modules[n].register_forward_hook(record(n)) for n in names]
    try:
        with preserved_rng(), torch.no_grad():
            for batch in (x, mixed):
                outs.append({})
                twin(batch)
    finally:
        for h in handles:
            h.remove()
    change = {}
    for name in names:
        a, b = outs[0][name], outs[1][name]  # (keep, features)
        diff, size = (a - b).norm(dim=1), a.norm(dim=1)  # (keep,)
        rel = torch.where(diff == 0, 0.0, diff / size)  # 0/0 -> 0, c/0 -> inf
        change[name] = float(rel.max())
    return change
