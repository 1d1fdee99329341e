"""`Snapshot`: a copy of everything a training step changes, to replay steps exactly.

The loop checks the training loss for divergence only every few steps (a device→host read per
step stalls a GPU). Before a stretch of unchecked steps it takes a snapshot; when a check finds
a non-finite loss inside the stretch, it restores the snapshot and replays the stretch one
checked step at a time, so the run ends exactly as if every step had been checked.
"""

import copy
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Snapshot:
    """Model parameters and buffers, optimizer state, grad scaler, the RNG states that a
    step draws from (torch's global CPU/CUDA state: dropout; `generators`: augmentation), and
    the state of other stateful step pieces (`states`: objects with ``state_dict`` /
    ``load_state_dict``, e.g. `normtheory.preconditioning.BNPreconditioner`)."""

    model: dict
    optimizer: dict
    scaler: dict | None
    cpu_rng: torch.Tensor
    cuda_rng: torch.Tensor | None
    generators: list
    states: list = ()

    @classmethod
    def take(cls, model: nn.Module, optimizer, scaler=None, generators=(), device=None, states=()):
        cuda = device is not None and torch.device(device).type == "cuda"
        return cls(
            model={k: v.detach().clone() for k, v in model.state_dict().items()},
            optimizer=copy.deepcopy(optimizer.state_dict()),
            scaler=scaler.state_dict() if scaler is not None else None,
            cpu_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state(device) if cuda else None,
            generators=[(g, g.get_state()) for g in generators],
            states=[(s, copy.deepcopy(s.state_dict())) for s in states],
        )

    def restore(self, model: nn.Module, optimizer, scaler=None, device=None) -> None:
        model.load_state_dict(self.model)
        optimizer.load_state_dict(copy.deepcopy(self.optimizer))
        if scaler is not None:
            scaler.load_state_dict(self.scaler)
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, device)
        for g, state in self.generators:
            g.set_state(state)
        for s, state in self.states:
            s.load_state_dict(copy.deepcopy(state))
