"""Information hooks: dependence between the units of a layer (IC-CORR, IC-MI), what dropout
does to it, and the sign structure of per-sample gradients (IC-SIGN), on a fixed probe batch."""

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from normtheory.batches import OutputsLoss, as_model_loss, to_device
from normtheory.checks import check_choice, check_int
from normtheory.hooks.base import Context, Every, Hook, Record
from normtheory.hooks.schedule import at_end
from normtheory.measure.dropout import module_dropout_ratios
from normtheory.measure.gradient_sign import gradient_sign
from normtheory.measure.information import (
    pairwise_correlation,
    pairwise_mutual_information,
    upper,
)
from normtheory.state import preserved_rng, probe_forward

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
      unit's most frequent value (e.g. exact zeros after ReLU).

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
        conv: ``"pool"`` or ``"positions"`` (see above); n_positions: positions per example.
        n_shuffles: shuffled copies for ``mi_floor`` (0: none).
        seed: seeds the positions drawn (the same at every call).
        name: the metric prefix (default 'info').
        every: the schedule (`Hook`; default every step).
    """

    events = ("start", "after_step", "end")
    default_name = "info"
    PREFIX = "info."
    CORR_ABS = "info.corr_abs"
    MI = "info.mi"
    MI_MAX = "info.mi_max"
    MI_FLOOR = "info.mi_floor"
    DEAD = "info.dead"
    ATOM = "info.atom"
    METRICS = (CORR_ABS, MI, MI_MAX, MI_FLOOR, DEAD, ATOM)

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
        name: str | None = None,
        every: Every = 1,
    ):
        super().__init__(name=name, every=every)
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
        return records

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        return self.measure(ctx.model)


class GradientSign(Hook):
    """IC-SIGN: the sign structure of per-sample weight-gradient rows, on a fixed probe batch.

    On its schedule (``after_step``), at ``start`` and at ``end``, it computes the exact
    per-sample gradients ∇_W ℓ_i of each watched layer's weight on the probe batch, each ℓ_i
    from one forward pass of the whole batch in mode `mode` (train: BN batch statistics and
    dropout masks, as the net trains), with `normtheory.measure.gradient_sign.gradient_sign`
    (model, ``.grad``, BN statistics, modes and RNG untouched), and records, key = layer name:

    - ``same_sign``: mean over rows (examples × output units) of the majority-sign share of the
      row's non-zero entries, max(#g > 0, #g < 0) / #g ≠ 0 (1.0: one-signed; ≈ 0.5: random);
    - ``one_signed``: fraction of rows whose non-zero entries share one sign.

    Args:
        probe: (inputs, targets), the fixed batch (N examples; cost: N backward passes); with
            `loss_fn` of the form ``(model, batch) -> (N,)``, a batch of any structure.
        layers: linear/conv module names; default all of them.
        mode: ``"train"`` or ``"eval"``.
        loss_fn: per-example losses, ``(outputs, targets) -> (N,)`` (default cross-entropy)
            or ``(model, batch) -> (N,)`` (`normtheory.batches`).
        name: the metric prefix (default 'sign').
        every: the schedule (`Hook`; default every step).
    """

    events = ("start", "after_step", "end")
    default_name = "sign"
    PREFIX = "sign."
    SAME_SIGN = "sign.same_sign"
    ONE_SIGNED = "sign.one_signed"
    METRICS = (SAME_SIGN, ONE_SIGNED)

    def __init__(
        self,
        *,
        probe,
        layers: Iterable[str] | None = None,
        mode: str = "train",
        loss_fn: Callable | None = None,
        name: str | None = None,
        every: Every = 1,
    ):
        super().__init__(name=name, every=every)
        check_choice("mode", mode, MODES)
        self.general = loss_fn is not None and not isinstance(as_model_loss(loss_fn), OutputsLoss)
        pair = isinstance(probe, tuple | list) and len(probe) == 2 and probe[1] is not None
        if not (pair or self.general):
            raise ValueError("probe must be (inputs, targets): the gradients need the targets")
        self.probe, self.mode, self.loss_fn = probe if self.general else tuple(probe), mode, loss_fn
        self.layers = None if layers is None else list(layers)

    def measure(self, model: nn.Module) -> list[Record]:
        device = next(model.parameters()).device
        probe = to_device(self.probe, device)
        x, y = (probe, None) if self.general else probe
        fractions = gradient_sign(
            model, x, y, layers=self.layers, train=self.mode == "train", loss_fn=self.loss_fn
        )
        records: list[Record] = []
        for name, f in fractions.items():
            records += [("same_sign", name, f.same_sign), ("one_signed", name, f.one_signed)]
        return records

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        return self.measure(ctx.model)


class DropoutDependence(Hook):
    """How much a network's own dropout module shrinks the pairwise dependence of the units it
    receives (IC-CORR: corr × q; IC-MI: MI × q², q its keep probability), measured when training
    ends.

    On its schedule `every` (default `at_end()`: once, at ``end``) it runs the model on the fixed
    probe batch in train mode (`probe_forward`: BN normalizes with the probe's batch statistics,
    as in training; parameters, BN running statistics, modes and RNG restored; any dropout
    upstream draws from the CPU generator seeded with `seed`) and captures, as float64 on the
    CPU, the input of each module in `capture` (default: the `dropout` module alone; conv
    activations pooled over space, `unit_samples`). `blocks` maps these captures to the units fed
    to the `dropout` module (default ``{dropout: input of dropout}``: the units the next weight
    layer receives, without and then with their dropout). Per block (key = block name):

    - ``constant``: units constant on the probe (dead ReLUs), left out of everything below;
    - ``mean_over_std``: mean over units of |mean / std| (IC-CORR assumes E[x] = 0; after BN in
      train mode this is |β| / |γ|, the learned shift);
    - ``atom``: fraction of exact zeros (IC-MI assumes no mass at 0);
    - ``tied``: mean over units of the share of the unit's most frequent value (the ReLU atom,
      which BN moves from 0 to β − γμ/σ);

    and, key ``"<block>|<q>"``, from `normtheory.measure.dropout.module_dropout_ratios` (the
    module's own masks, `n_masks` per example, its generator seeded by `seed`):

    - ``corr_ratio``: Σ ρ̂ρ / Σ ρ² over pairs (theory q); ``mi_ratio``: the same for binned MI
      (theory q²).

    Args:
        probe: (inputs, targets) or inputs, the fixed batch (N examples).
        dropout: the name of the ``nn.Dropout`` module whose masks are applied.
        capture: names of the modules whose inputs `blocks` receives (default ``(dropout,)``).
        blocks: ``{module name: input (N, d)} -> {block name: units (N, d)}``.
        n_masks: dropout masks per example.
        seed: seed of the masks (the same for every block).
        name: the metric prefix (default 'ic').
        every: the schedule (default `at_end()`).
    """

    events = ("after_step",)
    default_name = "ic"
    PREFIX = "ic."
    MEAN_OVER_STD = "ic.mean_over_std"
    ATOM = "ic.atom"
    TIED = "ic.tied"
    CONSTANT = "ic.constant"
    CORR_RATIO = "ic.corr_ratio"
    MI_RATIO = "ic.mi_ratio"
    METRICS = (MEAN_OVER_STD, ATOM, TIED, CONSTANT, CORR_RATIO, MI_RATIO)

    def __init__(
        self,
        *,
        probe,
        dropout: str,
        capture: Iterable[str] | None = None,
        blocks: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
        n_masks: int = 16,
        seed: int = 0,
        name: str | None = None,
        every: Every | None = None,
    ):
        super().__init__(name=name, every=at_end() if every is None else every)
        self.probe = probe[0] if isinstance(probe, tuple | list) else probe
        self.dropout, self.seed = dropout, seed
        self.capture = (dropout,) if capture is None else tuple(capture)
        self.blocks = blocks or (lambda acts: {dropout: acts[dropout]})
        self.n_masks = check_int("n_masks", n_masks)

    def measure(self, model: nn.Module) -> list[Record]:
        modules = dict(model.named_modules())
        bad = [n for n in (self.dropout, *self.capture) if n not in modules or not n]
        if bad:
            names = ", ".join(n for n in modules if n)
            raise ValueError(f"unknown modules {bad}; named modules: {names}")
        drop = modules[self.dropout]
        if not isinstance(drop, nn.Dropout):
            raise TypeError(f"{self.dropout!r} is a {type(drop).__name__}, not an nn.Dropout")
        with preserved_rng():
            torch.default_generator.manual_seed(self.seed)
            acts = probe_forward(
                model, self.probe, {n: modules[n] for n in self.capture}, side="input"
            )
        acts = {n: unit_samples(a).double().cpu() for n, a in acts.items()}  # (N, d) each
        records: list[Record] = []
        for block, units in self.blocks(acts).items():
            ratios = module_dropout_ratios(units, drop, n_masks=self.n_masks, seed=self.seed)
            key = f"{block}|{ratios.keep:g}"
            live = units[:, (units != units[:1]).any(0)]  # the units the ratios cover
            records += [
                ("mean_over_std", block, _mean_over_std(live)),
                ("atom", block, float((live == 0).double().mean())),
                ("tied", block, _mode_share(live)),
                ("constant", block, ratios.n_constant),
                ("corr_ratio", key, ratios.corr),
                ("mi_ratio", key, ratios.mi),
            ]
        return records

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        return self.measure(ctx.model)


def _mean_over_std(units: Tensor) -> float:
    """Mean over the columns of (N, d) `units` of |mean / std|."""
    return float((units.mean(0) / units.std(0)).abs().mean())


def _mode_share(units: Tensor) -> float:
    """Mean over the columns of (N, d) `units` of the share of the column's most frequent value."""
    shares = [col.unique(return_counts=True)[1].max() / len(col) for col in units.T]
    return float(torch.stack(shares).double().mean())
