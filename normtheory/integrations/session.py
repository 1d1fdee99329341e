"""What both framework callbacks share: one training run seen through a `Monitor`.

A callback translates its framework's events into the calls of a `Session`:

    begin(module, optimizer, total_steps)   # train start: builds the Monitor, fires start
    batch(batch)                            # the step's training batch (when the framework says)
    after_backward(step)                    # gradients complete, before the optimizer step
    after_step(step, loss=None)             # after the optimizer step
    eval(step, metrics)                     # after a validation / evaluation
    end(step)                               # train end: fires end, closes the sinks, unhooks
    abort()                                 # the training raised: closes the sinks, unhooks

The session reads the training forward with a forward hook on the module (its outputs and, for
output objects, its loss), recognizing it by its inputs (the tensor the batch map's `split`
gave, matched by identity), and passes the batch to the hooks in the form they take today
(`normtheory.integrations.batches`). With ``batch_from_forward=True`` (the Hugging Face
`Trainer`, whose events carry no batch) the batch itself is read from the module's training
forward call. Hooks only read: the module's forward hooks return nothing, and the records go to
the sinks.
"""

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from normtheory.hooks.base import Hook, Monitor
from normtheory.hooks.sinks import Sink


class Session:
    """One run of a framework's trainer, measured by `hooks` (see the module docstring).

    Args:
        hooks: the measurements.
        sinks: where the records go (default: one `MemorySink`, read by `Monitor.frame`).
        batch_map: `ArgBatch`, `KeywordBatch` or one of your own.
        flush_every: the Monitor's (`Monitor`).
        batch_from_forward: read each step's batch from the module's training forward call.
    """

    def __init__(
        self,
        hooks: Iterable[Hook],
        sinks: Iterable[Sink] | None,
        batch_map: Any,
        *,
        flush_every: int | None = None,
        batch_from_forward: bool = False,
    ):
        self.hooks, self.sinks, self.batch_map = list(hooks), sinks, batch_map
        self.flush_every, self.batch_from_forward = flush_every, batch_from_forward
        self.monitor: Monitor | None = None
        self._handles: list = []
        self._measuring = False  # inside a Monitor event: the forwards are the hooks' own
        self.ended = False
        self._clear()

    def _clear(self) -> None:
        self.inputs = self.targets = self.outputs = self.loss = None
        self.lr: float | None = None

    def begin(self, module: nn.Module, optimizer: Any, total_steps: float | None) -> None:
        if self.monitor is not None:
            raise RuntimeError(
                "this callback already measured a run; make a new callback for each fit/train"
            )
        measured = self.batch_map.measured(module)
        if total_steps is not None and not math.isfinite(total_steps):
            total_steps = None
        self.monitor = Monitor(
            measured,
            self.hooks,
            self.sinks,
            total_steps=None if total_steps is None else int(total_steps),
            optimizer=optimizer,
            flush_every=self.flush_every,
        )
        self._module = module
        self._handles = [module.register_forward_hook(self._forward_done, with_kwargs=True)]
        if self.batch_from_forward:
            pre = module.register_forward_pre_hook(self._forward_called, with_kwargs=True)
            self._handles.append(pre)
        self._fire("start")

    # -- the training forward -----------------------------------------------------------------

    def _training_call(self, module: nn.Module) -> bool:
        inner = getattr(self.monitor.model, "_inner", False)  # a KeywordModel's measurement
        return module.training and not self._measuring and not inner

    def _fire(self, event: str, *args: Any, **kw: Any) -> None:
        self._measuring = True
        try:
            getattr(self.monitor, event)(*args, **kw)
        finally:
            self._measuring = False

    def _forward_called(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self._training_call(module):
            self.batch(kwargs if kwargs else args[0] if len(args) == 1 else args)

    def _forward_done(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        x = self.batch_map.inputs_of(args, kwargs)
        if x is not None and x is self.inputs and self._training_call(module):
            self.outputs = self.batch_map.outputs_of(output)
            self.loss = self.batch_map.loss_of(output)

    # -- the framework's events ---------------------------------------------------------------

    def batch(self, batch: Any) -> None:
        """The training batch of the step under way (a new forward call replaces the last)."""
        self._clear()
        self.inputs, self.targets = self.batch_map.split(batch)

    def _args(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "targets": self.targets,
            "outputs": self.outputs,
            "loss": self.loss,
            "lr": self.lr,
        }

    def after_backward(self, step: int) -> None:
        optimizer = self.monitor.optimizer
        self.lr = None if optimizer is None else float(optimizer.param_groups[0]["lr"])
        self._fire("after_backward", step, **self._args())

    def after_step(self, step: int, loss: Any = None) -> None:
        if self.loss is None and isinstance(loss, torch.Tensor):
            self.loss = loss.detach()
        self._fire("after_step", step, **self._args())

    def eval(self, step: int, metrics: dict[str, Any]) -> None:
        if self.monitor is None or self.ended:  # before training, or after its end
            return
        scalars = {}
        for name, value in metrics.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                scalars[name] = float(value)
        if scalars:
            self._fire("eval", step, scalars)

    def end(self, step: int) -> None:
        try:
            self._fire("end", step)
        finally:
            self.abort()

    def abort(self) -> None:
        """Removes the forward hooks and closes the sinks, keeping the records so far (the
        training raised; no ``end`` event)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.batch_map.close()
        if self.monitor is not None and not self.ended:
            self.monitor.close()
        self.ended = True
