"""normtheory's hooks in a PyTorch Lightning run: ``Trainer(callbacks=[NormtheoryCallback(hooks)])``.

Needs Lightning (``pip install normtheory[lightning]``; the ``lightning`` package, else the
standalone ``pytorch_lightning``). Example: ``examples/lightning_hooks.py``.

What it records, on which of Lightning's hooks (step = ``trainer.global_step`` before the step):

| normtheory event | Lightning hook | the context |
|---|---|---|
| ``start`` | ``on_train_start`` | the module, the first optimizer, ``estimated_stepping_batches`` |
| (the batch) | ``on_train_batch_start`` | ``batch_map.split(batch)``: inputs, targets |
| ``after_backward`` | ``on_before_optimizer_step`` | gradients as the optimizer gets them (unscaled, before clipping), the lr of the step |
| ``after_step`` | ``on_train_batch_end`` | the training forward's outputs (forward hook), the step's loss (``training_step``'s) |
| ``eval`` | ``on_validation_end`` (not the sanity check) | the scalar metrics this validation logged (``trainer.callback_metrics``) |
| ``end`` | ``on_train_end`` | ``trainer.global_step``; the sinks are closed, the forward hooks removed |

The hooks call the module as ``module(inputs)``: by default the `LightningModule` itself (its
``forward`` maps inputs to outputs, and ``training_step`` calls ``self(x)``), else the submodule
named by ``module=`` (``training_step`` calls ``self.net(x)``: ``module="net"``). Automatic
optimization, one optimizer, no gradient accumulation (refused: `OrthogonalWeightNorm` must see
every micro-batch, and the events would fire once per micro-batch).
"""

from collections.abc import Iterable
from typing import Any

import pandas as pd

from normtheory.hooks.base import Hook
from normtheory.hooks.sinks import Sink
from normtheory.integrations.batches import ArgBatch
from normtheory.integrations.session import Session

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the standalone package
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError:
        raise ImportError(
            "normtheory.integrations.lightning needs PyTorch Lightning: "
            "pip install normtheory[lightning]"
        ) from None


class NormtheoryCallback(Callback):
    """Runs normtheory hooks on a Lightning `Trainer`'s steps (see the module docstring).

    Side-effect free: a run with the callback trains to bit-identical weights (tested on CPU).

    Args:
        hooks: the measurements (`normtheory.hooks`).
        sinks: where the records go (default one `MemorySink`: read them with `frame`).
        module: the submodule the hooks measure and call, by name; None: the LightningModule.
        batch_map: how a batch becomes the hooks' (inputs, targets) and how the module is
            called (`ArgBatch()`: tuple batches, ``module(x)``; `KeywordBatch()` for a
            Hugging Face model called as ``module(**batch)``).
        flush_every: keep the lazy hooks' values (`LossAccuracy`, `GradNorm`, `WeightNorm`) on
            the device and send them to the sinks every n steps, at evaluations and at the end
            (`Monitor`; default 100, as `normtheory.train`: one host synchronization per 100
            steps instead of one per value); None: every value at once.
    """

    def __init__(
        self,
        hooks: Iterable[Hook],
        sinks: Iterable[Sink] | None = None,
        *,
        module: str | None = None,
        batch_map: Any = None,
        flush_every: int | None = 100,
    ):
        super().__init__()
        self.module = module
        self.session = Session(hooks, sinks, batch_map or ArgBatch(), flush_every=flush_every)
        self._step: int | None = None  # the step under way, from on_before_optimizer_step

    @property
    def monitor(self):
        """The run's `Monitor` (None before the training starts)."""
        return self.session.monitor

    def frame(self, pivot: bool = False) -> pd.DataFrame:
        """The records so far (`Monitor.frame`)."""
        if self.monitor is None:
            raise RuntimeError("no records yet: the training has not started")
        return self.monitor.frame(pivot=pivot)

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.accumulate_grad_batches != 1:
            raise ValueError(
                "NormtheoryCallback does not support gradient accumulation "
                f"(accumulate_grad_batches={trainer.accumulate_grad_batches})"
            )
        if not pl_module.automatic_optimization:
            raise ValueError("NormtheoryCallback supports automatic optimization only")
        module = pl_module if self.module is None else pl_module.get_submodule(self.module)
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        self.session.begin(module, optimizer, trainer.estimated_stepping_batches)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.session.batch(batch)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._step = trainer.global_step
        self.session.after_backward(self._step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._step is None:  # training_step returned None: no optimizer step was taken
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self.session.after_step(self._step, loss=loss)
        self._step = None

    def on_validation_start(self, trainer, pl_module) -> None:
        self._before = dict(trainer.callback_metrics)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.monitor is None:
            return
        before = getattr(self, "_before", {})
        logged = {
            name: value
            for name, value in trainer.callback_metrics.items()
            if name not in before or before[name] is not value  # logged by this validation
        }
        self.session.eval(trainer.global_step, logged)

    def on_train_end(self, trainer, pl_module) -> None:
        self.session.end(trainer.global_step)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.monitor is not None:
            self.session.abort()
