"""Hooks on batch statistics: elimination singularities of the normalization layers, inference
example weighing of a trained BN net, and the batch dependence of a trained net's norm layers."""

from collections.abc import Iterable

import numpy as np
import torch

from normtheory.checks import check_choice, check_int
from normtheory.hooks.base import Context, Every, Hook, Record
from normtheory.hooks.schedule import at_end
from normtheory.measure.batch_dependence import batch_dependence
from normtheory.measure.outcomes import evaluate, example_weighing, train_eval_discrepancy
from normtheory.measure.singularity import channel_health
from normtheory.norms import norm_layers
from normtheory.state import probe_forward


class Singularities(Hook):
    """Dead channels and StatDiff of every normalization layer, on a fixed probe batch.

    On its schedule (``after_step``), at ``start`` and at ``end`` it runs the probe through the
    model (train mode by default; everything restored) and records per norm layer (key = its
    name) the `ChannelHealth` summary of the layer's output: ``dead`` (fraction of channels off
    for every probe example after a ReLU), ``off`` (mean fraction of examples a channel is off),
    ``stat_diff`` (mean over channels of √(μ_c² + (σ_c − 1)²)) and ``mean_shift`` (mean μ_c/σ_c).
    "Off" assumes a ReLU follows the norm (placement ``norm_act``).

    Args:
        probe: (inputs, targets) or inputs.
        mode: ``"train"`` or ``"eval"``.
        name: the metric prefix (default 'singular').
        every: the schedule (`Hook`; default every step).
    """

    events = ("start", "after_step", "end")
    default_name = "singular"
    PREFIX = "singular."
    DEAD = "singular.dead"
    OFF = "singular.off"
    STAT_DIFF = "singular.stat_diff"
    MEAN_SHIFT = "singular.mean_shift"
    METRICS = (DEAD, OFF, STAT_DIFF, MEAN_SHIFT)

    def __init__(self, *, probe, mode: str = "train", name: str | None = None, every: Every = 1):
        super().__init__(name=name, every=every)
        check_choice("mode", mode, ("train", "eval"))
        self.probe = probe[0] if isinstance(probe, tuple | list) else probe
        self.mode = mode

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        layers = norm_layers(ctx.model)
        outputs = probe_forward(ctx.model, self.probe, layers, train=self.mode == "train")
        return [
            (metric, name, value)
            for name, y in outputs.items()
            for metric, value in channel_health(y).summary().items()
        ]


class ExampleWeighing(Hook):
    """Test accuracy and train/inference discrepancy of a trained BN net at several inference
    example weights w, once at the end of training (Summers & Dinneen 2019).

    At the ``end`` event of a completed run (a diverged run records nothing), for each multiple
    m of `multiples` it sets w = min(m / B, 1) in every BatchNorm
    (`normtheory.measure.outcomes.example_weighing`: each example normalized with
    μ = (1 − w) μ_pop + w μ_i) and records, key = f"{m:g}" (the multiple w·B):

    - ``test_acc``, ``test_loss``: `evaluate` on `test_set` (eval mode, w applied);
    - ``loss_gap``, ``output_gap``: the means over `n_batches` random training batches of size B
      of `train_eval_discrepancy`'s eval − train loss and ‖f_train − f_eval‖_F / ‖f_eval‖_F.

    Nothing is retrained: w only changes how the stored statistics are used, and every layer's
    own w is restored afterwards. The batches are the same at every w (drawn once per run).

    Args:
        train_set, test_set: the run's datasets (the discrepancy's batches come from
            `train_set`).
        batch_size: B, the training batch size (w = m / B, the batches' size).
        multiples: the multiples m of 1/B (0 is standard eval-mode BN).
        n_batches: training batches averaged in the discrepancy.
        seed: seeds the draw of the batches (a local generator; the global RNG is untouched);
            default 1000 + the run's seed, read as ``torch.initial_seed()`` (the training loop
            seeds the global RNG with it), so runs draw their own batches, apart from their
            data order.
        name: the metric prefix (default 'exw').
        every: defaults to `at_end()`, the only schedule this hook has.
    """

    events = ("end",)
    default_name = "exw"
    PREFIX = "exw."
    TEST_ACC = "exw.test_acc"
    TEST_LOSS = "exw.test_loss"
    LOSS_GAP = "exw.loss_gap"
    OUTPUT_GAP = "exw.output_gap"
    METRICS = (TEST_ACC, TEST_LOSS, LOSS_GAP, OUTPUT_GAP)

    def __init__(
        self,
        *,
        train_set,
        test_set,
        batch_size: int,
        multiples: Iterable[float] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0),
        n_batches: int = 16,
        seed: int | None = None,
        name: str | None = None,
        every: Every | None = None,
    ):
        super().__init__(name=name, every=at_end() if every is None else every)
        self.train_set, self.test_set = train_set, test_set
        self.batch_size = check_int("batch_size", batch_size)
        self.n_batches = check_int("n_batches", n_batches)
        self.multiples = tuple(float(m) for m in multiples)
        if not self.multiples or min(self.multiples) < 0:
            raise ValueError(f"multiples must be non-negative numbers, got {multiples!r}")
        self.seed = seed

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        if ctx.extras.get("status", "completed") != "completed":
            return []
        b, n = self.batch_size, len(self.train_set)
        seed = 1000 + torch.initial_seed() if self.seed is None else self.seed
        gen = torch.Generator().manual_seed(seed)
        batches = [torch.randperm(n, generator=gen)[:b] for _ in range(self.n_batches)]
        device = next(ctx.model.parameters()).device
        inputs, targets = self.train_set.tensors[:2]
        records = []
        for m in self.multiples:
            with example_weighing(ctx.model, min(m / b, 1.0)):
                test = evaluate(ctx.model, self.test_set)
                gaps = [
                    train_eval_discrepancy(ctx.model, inputs[i].to(device), targets[i].to(device))
                    for i in batches
                ]
            key = f"{m:g}"
            records += [
                ("test_acc", key, test["acc"]),
                ("test_loss", key, test["loss"]),
                ("loss_gap", key, float(np.mean([g["loss_gap"] for g in gaps]))),
                ("output_gap", key, float(np.mean([g["output_gap"] for g in gaps]))),
            ]
        return records


class BatchDependence(Hook):
    """How much the other examples of a batch change one example's norm outputs, in train mode
    (Singh & Krishnan 2019: FRN is batch-independent), by default once at the end of training.

    At the ``end`` event of a completed run (a diverged run records nothing) it calls
    `normtheory.measure.batch_dependence.batch_dependence` on the two fixed probe batches (a
    float64 copy of the net in train mode; the net itself is untouched) and records per norm
    layer (key = its name) ``max_change``: max over the `keep` kept examples of
    ‖y_a − y_b‖ / ‖y_a‖, where y_a is the example's output in `probe` and y_b in `probe` with
    its other examples replaced by those of `other`. 0 to rounding for FRN, GN, LN, IN.

    Args:
        probe: (inputs, targets) or inputs, a batch (N, ...).
        other: the same, of the same shape: its rows from `keep` on replace the probe's.
        keep: the number of leading probe examples kept.
        name: the metric prefix (default 'batchdep').
        every: defaults to `at_end()`.
    """

    events = ("end",)
    default_name = "batchdep"
    PREFIX = "batchdep."
    MAX_CHANGE = "batchdep.max_change"
    METRICS = (MAX_CHANGE,)

    def __init__(
        self,
        *,
        probe,
        other,
        keep: int = 1,
        name: str | None = None,
        every: Every | None = None,
    ):
        super().__init__(name=name, every=at_end() if every is None else every)
        self.probe = probe[0] if isinstance(probe, tuple | list) else probe
        self.other = other[0] if isinstance(other, tuple | list) else other
        self.keep = check_int("keep", keep)

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        if ctx.extras.get("status", "completed") != "completed":
            return []
        change = batch_dependence(ctx.model, self.probe, self.other, keep=self.keep)
        return [("max_change", name, value) for name, value in change.items()]
