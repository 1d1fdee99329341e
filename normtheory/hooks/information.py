"""Information hooks: dependence between the units of a layer (IC-CORR, IC-MI) and the sign
structure of per-sample gradients (IC-SIGN), measured on a fixed probe batch."""

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from normtheory.checks import check_choice
from normtheory.hooks.base import Context, Hook, Record
from normtheory.measure.information import (
    pairwise_correlation,
    pairwise_mutual_information,
    upper,
)
from normtheory.measure.weights import same_sign_fraction
from normtheory.state import probe_forward

SIDES = ("input", "output")
CONV_MODES = ("pool", "positions")
MODES = ("train", "eval")
_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def unit_samples(
    acts: Tensor, *, conv: str = "pool", n_positions: int = 8, generator=None
) -> Tensor:
    """Activations (N, C, *spatial) or (N, d) as samples × units, (M, units).

    ``conv="pool"``: each channel averaged over space, M = N (what a pooled head sees);
    ``conv="positions"``: `n_positions` spatial positions drawn per example (from `generator`),
    each (example, position) one sample of the C channel values, M = N · n_positions (what the
    next layer's kernel sees at one position).
    """
    check_choice("conv", conv, CONV_MODES)
    if acts.ndim == 2:
        return acts
    if acts.ndim < 2:
        raise ValueError(f"activations need a batch and a unit axis, got shape {tuple(acts.shape)}")
    flat = acts.flatten(2)  # (N, C, S)
    if conv == "pool":
        return flat.mean(2)
    n, c, s = flat.shape
    idx = torch.randint(s, (n, n_positions), generator=generator).to(flat.device)
    picked = flat.gather(2, idx[:, None, :].expand(n, c, n_positions))  # (N, C, P)
    return picked.permute(0, 2, 1).reshape(n * n_positions, c)


class NeuronInformation(Hook):
    """Correlation and mutual information between all pairs of a layer's units, on a probe batch.

    On its schedule (``after_step``), at ``start`` and at ``end``, it runs the model on the fixed
    probe batch (mode `mode`, gradients off, everything restored afterwards: parameters, BN
    running statistics, train/eval modes and the RNG, so dropout's mask stream in training is
    untouched), captures the input or output of each watched layer and records, key = layer name:

    - ``corr_abs``: mean |Pearson correlation| over pairs; ``mi``: mean MI over pairs (nats,
      `method`); ``mi_max``; with ``n_shuffles`` > 0 ``mi_floor``: the same mean on data with
      every unit permuted independently (the estimator's floor);
    - ``dead``: constant units (left out of the means); ``atom``: mean fraction of samples at a
      unit's most frequent value (e.g. exact zeros after ReLU);
    - ``same_sign`` (``side="input"`` on a linear/conv layer): `same_sign_fraction` of the
      per-sample gradient rows (IC-SIGN).

    Conv activations (N, C, H, W) become samples × channels by `unit_samples`: spatially pooled
    (``conv="pool"``, default) or ``n_positions`` sampled positions per example
    (``conv="positions"``, drawn from a generator seeded by `seed`, the same each time).

    Args:
        probe: (inputs, targets) or inputs, the fixed batch.
        layers: module names; default every linear/conv layer.
        side: ``"input"`` (what the layer receives) or ``"output"``.
        method: MI estimator of `pairwise_mutual_information` (``binned`` default: it handles the
            atoms that dropout and ReLU create; ``gaussian_copula`` under-reads them).
        max_units: at most this many units per layer (the first ones), to bound the cost.
        mode: ``"train"`` (batch statistics, dropout masks — the state the net trains in) or
            ``"eval"``.
    """

    events = ("start", "after_step", "end")
    default_name = "info"

    def __init__(
        self,
        *,
        probe,
        layers: Iterable[str] | None = None,
        side: str = "input",
        method: str = "binned",
        max_units: int = 64,
        mode: str = "train",
        conv: str = "pool",
        n_positions: int = 8,
        n_shuffles: int = 0,
        seed: int = 0,
        **kw,
    ):
        super().__init__(**kw)
        check_choice("side", side, SIDES)
        check_choice("mode", mode, MODES)
        check_choice("conv", conv, CONV_MODES)
        if max_units < 2:
            raise ValueError(f"max_units must be >= 2 (pairs need two units), got {max_units}")
        self.probe = probe[0] if isinstance(probe, tuple | list) else probe
        self.layers = None if layers is None else list(layers)
        self.side, self.method, self.mode, self.conv = side, method, mode, conv
        self.max_units, self.n_positions, self.n_shuffles, self.seed = (
            max_units,
            n_positions,
            n_shuffles,
            seed,
        )

    def _modules(self, model: nn.Module) -> dict[str, nn.Module]:
        modules = dict(model.named_modules())
        if self.layers is None:
            return {n: m for n, m in modules.items() if isinstance(m, _WEIGHT_LAYERS)}
        bad = [n for n in self.layers if n not in modules or not n]
        if bad:
            raise ValueError(
                f"unknown layers {bad}; named modules: {', '.join(n for n in modules if n)}"
            )
        return {n: modules[n] for n in self.layers}

    def capture(self, model: nn.Module) -> dict[str, Tensor]:
        """The watched layers' inputs/outputs on the probe batch (first call of each layer)."""
        return probe_forward(
            model, self.probe, self._modules(model), side=self.side, train=self.mode == "train"
        )

    def measure(self, model: nn.Module) -> list[Record]:
        records: list[Record] = []
        modules = self._modules(model)
        for name, acts in self.capture(model).items():
            gen = torch.Generator().manual_seed(self.seed)
            units = unit_samples(acts, conv=self.conv, n_positions=self.n_positions, generator=gen)
            units = units[:, : self.max_units]
            corr = pairwise_correlation(units)
            mi = pairwise_mutual_information(
                units, method=self.method, n_shuffles=self.n_shuffles, seed=self.seed
            )
            mi_values, corr_values = upper(mi), upper(corr)
            nan = float("nan")
            records += [
                ("corr_abs", name, float(corr_values.abs().mean()) if corr_values.numel() else nan),
                ("mi", name, float(mi_values.mean()) if mi_values.numel() else nan),
                ("mi_max", name, float(mi_values.max()) if mi_values.numel() else nan),
                ("dead", name, len(mi.dead)),
                ("atom", name, float(mi.atom_fraction.mean())),
            ]
            if mi.shuffle_floor is not None:
                floor = mi.shuffle_floor[~mi.matrix.isnan()]
                records.append(("mi_floor", name, float(floor.mean())))
            if self.side == "input" and isinstance(modules[name], _WEIGHT_LAYERS):
                records.append(("same_sign", name, same_sign_fraction(modules[name], acts)))
        return records

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        return self.measure(ctx.model)
