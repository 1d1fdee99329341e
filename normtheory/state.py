"""Save and restore everything a measurement could disturb, so hooks never change training.

A measurement may switch modes, run forward passes (which update BatchNorm running statistics in
train mode and draw dropout masks), or call ``backward`` (which accumulates into ``.grad``).
`preserved` snapshots train/eval mode, buffers, ``.grad`` and the RNG streams (torch CPU and
CUDA, numpy, Python) and puts them back exactly on exit, even when the measurement raises.
"""

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from normtheory.batches import call_model, to_device


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restores torch (CPU and every CUDA device), numpy and Python RNG states on exit."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        np.random.set_state(np_state)
        random.setstate(py_state)


@contextmanager
def preserved(model: nn.Module, *, params: bool = False) -> Iterator[nn.Module]:
    """Context manager that leaves `model` and the RNG streams exactly as it found them.

    Args:
        model: the module to protect.
        params: also snapshot and restore parameter values (costs one copy of the weights;
            only needed by code that perturbs weights in place).
    """
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    grads = [(p, None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()]
    values = [(p, p.detach().clone()) for p in model.parameters()] if params else []
    try:
        with preserved_rng():
            yield model
    finally:
        for m, training in modes:
            m.training = training
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
            for p, saved in values:
                p.copy_(saved)
        for p, saved in grads:
            if saved is None:
                p.grad = None
            elif p.grad is None:
                p.grad = saved
            else:
                p.grad.copy_(saved)


def probe_forward(
    model: nn.Module,
    inputs: object,
    modules: dict[str, nn.Module],
    *,
    side: str = "output",
    train: bool = True,
) -> dict[str, torch.Tensor]:
    """Runs `model` on `inputs` without gradients and returns, per name, a copy of the input
    (``side="input"``) or output of each module in `modules` at its first call. `inputs` may
    have any structure: a tensor (``model(x)``), a dict (``model(**x)``), a tuple
    (``model(*x)``; `normtheory.batches.call_model`).

    The model runs in train mode (batch statistics, dropout masks) or eval mode; parameters,
    buffers (BN running statistics), ``.grad``, modes and the RNG streams are restored, so a
    probe never changes training.
    """
    if side not in ("input", "output"):
        raise ValueError(f"unknown side {side!r}; valid: input, output")
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module, args, output):
            value = args[0] if side == "input" else output
            if name not in seen and isinstance(value, torch.Tensor):
                seen[name] = value.detach().clone()  # later ops may write in place

        return hook

    device = next(model.parameters()).device
    handles = [m.register_forward_hook(keep(n)) for n, m in modules.items()]
    try:
        with preserved(model), torch.no_grad():
            model.train(train)
            call_model(model, to_device(inputs, device))
    finally:
        for h in handles:
            h.remove()
    return {n: seen[n] for n in modules if n in seen}
