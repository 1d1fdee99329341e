"""normtheory's hooks in a Hugging Face `Trainer` run: ``Trainer(..., callbacks=[NormtheoryCallback(hooks)])``.

Needs transformers and accelerate (``pip install normtheory[transformers]``). Example:
``examples/hf_trainer_hooks.py``.

What it records, on which of the `Trainer`'s events (step = ``state.global_step`` before the
step):

| normtheory event | Trainer event | the context |
|---|---|---|
| ``start`` | ``on_train_begin`` | the model, the optimizer, ``state.max_steps`` |
| (the batch) | the model's training forward (a forward hook) | ``batch_map.split`` of its keyword arguments; its logits and loss |
| ``after_backward`` | ``on_pre_optimizer_step`` | gradients as the optimizer gets them (after the Trainer's clipping, ``max_grad_norm``), the lr of the step |
| ``after_step`` | ``on_optimizer_step`` | after ``optimizer.step()``, before the scheduler and ``zero_grad`` |
| ``eval`` | ``on_evaluate`` | the evaluation's scalar metrics (``eval_loss``, ...) |
| ``end`` | ``on_train_end`` | ``state.global_step``; the sinks are closed, the forward hooks removed |

The `Trainer`'s events carry no batch, so the callback reads it from the model's training
forward call, ``model(**batch)``; the hooks take it through the batch map (default
`KeywordBatch`: inputs ``batch["input_ids"]``, targets ``batch["labels"]``, and they call the
model as ``model(input_ids=x).logits``, so their default cross-entropy fits sequence
classification; give a causal LM's hooks a ``loss_fn`` that shifts the labels). No gradient
accumulation (refused: `OrthogonalWeightNorm` must see every micro-batch).
"""

from collections.abc import Iterable
from typing import Any

import pandas as pd

from normtheory.hooks.base import Hook
from normtheory.hooks.sinks import Sink
from normtheory.integrations.batches import KeywordBatch
from normtheory.integrations.session import Session

try:
    from transformers import TrainerCallback
except ImportError:
    raise ImportError(
        "normtheory.integrations.transformers needs transformers: "
        "pip install normtheory[transformers]"
    ) from None


class NormtheoryCallback(TrainerCallback):
    """Runs normtheory hooks on a Hugging Face `Trainer`'s steps (see the module docstring).

    Side-effect free: a run with the callback trains to bit-identical weights (tested on CPU).

    Args:
        hooks: the measurements (`normtheory.hooks`).
        sinks: where the records go (default one `MemorySink`: read them with `frame`).
        batch_map: how a batch becomes the hooks' (inputs, targets) and how they call the model
            (default `KeywordBatch()`; see `normtheory.integrations.batches`).
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
        batch_map: Any = None,
        flush_every: int | None = 100,
    ):
        self.session = Session(
            hooks,
            sinks,
            batch_map or KeywordBatch(),
            flush_every=flush_every,
            batch_from_forward=True,
        )

    @property
    def monitor(self):
        """The run's `Monitor` (None before the training starts)."""
        return self.session.monitor

    def frame(self, pivot: bool = False) -> pd.DataFrame:
        """The records so far (`Monitor.frame`)."""
        if self.monitor is None:
            raise RuntimeError("no records yet: the training has not started")
        return self.monitor.frame(pivot=pivot)

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if args.gradient_accumulation_steps != 1:
            raise ValueError(
                "NormtheoryCallback does not support gradient accumulation "
                f"(gradient_accumulation_steps={args.gradient_accumulation_steps})"
            )
        self.session.begin(model, optimizer, state.max_steps if state.max_steps > 0 else None)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.session.after_backward(state.global_step)

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.session.after_step(state.global_step)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.monitor is not None and metrics:
            self.session.eval(state.global_step, metrics)

    def on_train_end(self, args, state, control, **kwargs):
        if self.monitor is not None:
            self.session.end(state.global_step)
