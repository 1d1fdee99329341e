"""Hook protocol, the per-step context object, and `Monitor`, which dispatches events to hooks.

The training loop (`normtheory.train.train`) and a user's own loop use the same `Monitor`:
the loop fills a `Context` and calls ``monitor.fire(event, ctx)``; each scheduled hook returns
records ``(metric, key, value)`` and the monitor stamps them with the step. Hooks never store
records and never own the loop.

A hook whose class sets ``lazy = True`` may return its values as floating 0-dim tensors or as
`Deferred` elements of a 1-d tensor, fresh and never modified afterwards: a `Monitor` with
``flush_every=n`` keeps those on the device and converts the pending ones to floats with one
``torch.cat(...).tolist()`` every `n` steps (and at ``eval``, ``end``, `flush`, `frame`), so
measuring every step needs no host synchronization per hook per step. The floats and the order
of the rows the sinks receive are the same as with ``flush_every=None``.
"""

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from normtheory.hooks.schedule import Schedule, as_schedule
from normtheory.hooks.sinks import MemorySink, Sink, check_sinks, pivot_records

EVENTS = ("start", "after_backward", "after_step", "eval", "end")
_SCHEDULED = ("after_backward", "after_step")

Record = tuple[str, str, float]
Every = int | Callable[[int], bool] | Schedule  # a hook's `every`: see `Hook`


@dataclass
class Context:
    """What the loop knows at an event; hooks read it and must not modify it.

    Attributes:
        model: the model being trained.
        step: the optimizer step about to be taken (after_backward) or just taken (after_step).
        inputs, targets, outputs, loss: the current training batch and its forward results
            (`loss` is the mean loss tensor, detached). `inputs` is what the model was called
            on, of any structure (a tensor; a dict for ``model(**inputs)``).
        batch: the training batch as the loop holds it, of any structure (a dict, a Hugging
            Face ``BatchEncoding``, ...; `normtheory.batches`), for hooks that take a loss
            ``loss_fn(model, batch)``; when None, hooks use ``(inputs, targets)``.
        optimizer: the optimizer, when the loop has one.
        lr: the learning rate of the current step.
        loss_fn: the loop's loss, ``loss_fn(outputs, targets)`` or ``loss_fn(model, batch)``.
        metrics: evaluation metrics, filled at the ``eval`` event (e.g. ``test_loss``).
        extras: anything else a study passes along (probe batches, run status, ...).
        total_steps: the run's total number of optimizer steps, when the loop knows it (what
            `normtheory.hooks.schedule.evenly` spreads its points over).
    """

    model: nn.Module
    step: int = 0
    inputs: Any = None
    targets: torch.Tensor | None = None
    outputs: Any = None
    loss: torch.Tensor | None = None
    batch: Any = None
    optimizer: torch.optim.Optimizer | None = None
    lr: float | None = None
    loss_fn: Callable[..., torch.Tensor] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    total_steps: int | None = None


class Deferred:
    """A lazy hook's record value: element `index` of the 1-d floating tensor `values` (fresh,
    detached, never modified afterwards), converted to a float when the monitor flushes; many
    records of one call share one tensor, so a flush concatenates a few tensors, not one per
    value."""

    __slots__ = ("values", "index")

    def __init__(self, values: torch.Tensor, index: int):
        self.values, self.index = values, index

    def __float__(self) -> float:
        return float(self.values[self.index])


# what an event's keyword arguments may set (the monitor fills model and step itself)
_EVENT_ARGS = frozenset(f.name for f in dataclasses.fields(Context)) - {"model", "step"}


class Hook:
    """Base class: a named measurement called on a schedule.

    Subclasses set `events` and implement `on(event, ctx) -> iterable of (metric, key, value)`.
    Metrics are stored as ``"<hook name>.<metric>"`` so two instances with different names
    never overwrite each other's records.

    Each subclass lists the metrics it records as class constants holding their full names
    under the default name (e.g. ``LossAccuracy.TRAIN_LOSS == "outcome.train_loss"``), all of
    them in ``METRICS`` and the common prefix in ``PREFIX``; `rename` gives a constant's name
    for an instance with another `name`.

    Args:
        name: stable name, the prefix of every metric this hook records.
        every: the schedule of the per-step events (`normtheory.hooks.schedule`): a schedule
            (``every(n)``, ``evenly(n_points)``, ``at_end()``), an int n (the same as
            ``every(n)``) or a callable ``step -> bool``. Start, eval and end always run; a
            schedule that runs at the end (``at_end()``) adds the ``end`` event.
    """

    events: tuple[str, ...] = ("after_step",)
    lazy = False  # True: `on` may return fresh detached 0-dim float tensors, converted at a flush
    # True: no record at the ``end`` of a run that diverged (``ctx.extras["status"]``): the
    # measurement needs the finite weights of a trained net (curvature of a net whose weights
    # blew up is NaN, and an eigensolver on NaN raises); a diverged run is an outcome, not a crash
    trained_only = False
    default_name = "hook"
    PREFIX = "hook."
    METRICS: tuple[str, ...] = ()

    def __init__(
        self, *, name: str | None = None, every: int | Callable[[int], bool] | Schedule = 1
    ):
        self.schedule = as_schedule(every)
        if self.schedule.at_end and "end" not in self.events:
            self.events = (*self.events, "end")
        unknown = set(self.events) - set(EVENTS)
        if unknown:
            raise ValueError(
                f"{type(self).__name__} uses unknown events {sorted(unknown)}; known: {EVENTS}"
            )
        self.name = name or self.default_name
        self.every = every

    def scheduled(self, event: str, step: int, total_steps: int | None = None) -> bool:
        """Whether the hook runs at `event` on `step` of a run of `total_steps` steps."""
        if event not in self.events:
            return False
        if event not in _SCHEDULED:
            return True
        return self.schedule.due(step, total_steps)

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        raise NotImplementedError

    def __call__(self, event: str, ctx: Context) -> list[Record]:
        return [(metric, key, float(value)) for metric, key, value in self.records(event, ctx)]

    def records(self, event: str, ctx: Context) -> list[tuple[str, str, float | torch.Tensor]]:
        """The records of `on` with full metric names; a `lazy` hook's tensor values stay
        (detached) tensors, every other value becomes a float."""
        name = self.name
        if self.trained_only and event == "end" and ctx.extras.get("status") == "diverged":
            return []
        if not self.lazy:
            return [
                (f"{name}.{metric}", key, float(value))
                for metric, key, value in self.on(event, ctx)
            ]
        return [
            (f"{name}.{metric}", key, value if isinstance(value, _LAZY) else float(value))
            for metric, key, value in self.on(event, ctx)
        ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, every={self.every!r})"


class Monitor:
    """Runs hooks at events and sends their records to sinks; usable in any training loop.

    Args:
        model: the model being trained.
        hooks: the measurements.
        sinks: where records go (`normtheory.hooks.sinks`); default one `MemorySink`, read by
            `frame`. Sinks are flushed at the ``end`` event; `close` closes them.
        total_steps: the run's total number of steps, passed to hooks in the context of the
            events fired through `start`, `after_step`, …; needed by ``evenly`` schedules.
        optimizer: the loop's optimizer, given to every event (an event's own ``optimizer=``
            wins); the context's learning rate ``lr`` is its first param group's unless an
            event passes ``lr=``.
        flush_every: None (default): every record reaches the sinks as a float when its event
            fires. An int n: the tensor values of `lazy` hooks (`LossAccuracy`, `GradNorm`,
            `WeightNorm`) stay on the device and the pending rows go to the sinks every n
            steps, at ``eval`` and ``end``, and on `flush`/`frame`: one host synchronization
            per n steps instead of one per value. The sinks receive the same rows, in the same
            order, either way; the rows an event returns may then hold 0-dim tensors.

    The events and what to pass to them (keyword arguments fill the `Context`)::

        monitor.start()                                   # before the first step
        monitor.after_backward(step, inputs=x, loss=loss.detach())
        monitor.after_step(step, inputs=x, targets=y, outputs=out, loss=loss.detach())
        monitor.eval(step, {"test_loss": ..., "test_acc": ...})   # your own evaluation
        monitor.end(total_steps)

    What each hook reads (a missing one is an error naming the hook and the argument):

    - `LossAccuracy`: ``loss`` (train_loss), ``outputs`` + ``targets`` (train_acc) when given;
      its own ``data=`` for evaluation.
    - `OrthogonalWeightNorm`: `start` first, then ``inputs`` (what the model was called on, the
      very tensors: ``x``, or the dict of ``model(**inputs)``) or ``batch`` at every
      `after_backward`.
    - `ScaleInvariance`: ``optimizer`` (η and λ per group; without one, ``lr``).
    - `HessianSpectrum`, `HessianTrace`, `HessianDensity`, `Smoothness`, `OneStepLoss`: their
      ``probe=`` (one batch of any structure, or a DataLoader: the whole dataset), else
      ``batch`` (any structure, with a ``loss_fn(model, batch)``) or ``inputs`` + ``targets``
      of the first call; `Smoothness` and `OneStepLoss` also a learning rate: their ``lr=``,
      else ``lr`` / the optimizer's.
    - `GradNorm`: the gradients in ``.grad`` (fire it at `after_backward`); `WeightNorm`,
      `NeuronInformation`, `GradientSign`, `Singularities`, `ExampleWeighing`,
      `BatchDependence`, `DropoutDependence`: the model and their own ``probe=``.

    Example:
        >>> monitor = Monitor(model, [GradNorm(every=10)], sinks=[MemorySink(), CSVSink("r.csv")])
        >>> loss.backward(); monitor.after_backward(step, loss=loss)
        >>> opt.step(); monitor.after_step(step, loss=loss)
        >>> monitor.frame()  # DataFrame with columns step, metric, key, value

    As a context manager (`start` on entry; `end` and `close` on exit), with `step` around the
    optimizer step (``after_backward`` on entry, ``after_step`` on exit)::

        with Monitor(model, hooks, optimizer=opt) as monitor:
            for step, (x, y) in enumerate(loader):
                out = model(x)
                loss = F.cross_entropy(out, y)
                opt.zero_grad()
                loss.backward()
                with monitor.step(step, batch=(x, y), loss=loss, outputs=out):
                    opt.step()
        monitor.frame(pivot=True)  # one row per step, one column per metric/key
    """

    def __init__(
        self,
        model: nn.Module,
        hooks: Iterable[Hook] = (),
        sinks: Iterable[Sink] | None = None,
        *,
        total_steps: int | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        flush_every: int | None = None,
    ):
        if flush_every is not None and (
            isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1
        ):
            raise ValueError(f"flush_every must be None or an int >= 1, got {flush_every!r}")
        self.model = model
        self.total_steps = total_steps
        self.optimizer = optimizer
        self.flush_every = flush_every
        self._pending: list[tuple[int, str, str, float | torch.Tensor]] = []
        self._pending_since: int | None = None  # step of the oldest pending row
        self._steps_done = 0  # 1 + the last step an after_step event was fired for
        self.sinks = [MemorySink()] if sinks is None else check_sinks(sinks)
        self.hooks = list(hooks)
        names = [h.name for h in self.hooks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(
                f"hook names must be unique; duplicated: {dupes} (pass name=... to tell them apart)"
            )

    def fire(self, event: str, ctx: Context) -> list[tuple[int, str, str, float]]:
        """Calls every hook scheduled for (`event`, ``ctx.step``); returns and keeps the rows."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; known events: {', '.join(EVENTS)}")
        step = ctx.step
        rows = [
            (step, *rec)
            for hook in self.hooks
            if hook.scheduled(event, step, ctx.total_steps)
            for rec in hook.records(event, ctx)
        ]
        if self.flush_every is None:
            rows = _materialize(rows)
            for sink in self.sinks:
                sink.write(rows)
        elif rows:
            if self._pending_since is None:
                self._pending_since = step
            self._pending.extend(rows)
            if event in ("eval", "end") or step - self._pending_since + 1 >= self.flush_every:
                self._drain()
        if event == "end":
            self.flush()
        return rows

    def _drain(self) -> None:
        """Sends the pending rows, their tensor values converted at once, to the sinks."""
        rows, self._pending, self._pending_since = self._pending, [], None
        if rows:
            rows = _materialize(rows)
            for sink in self.sinks:
                sink.write(rows)

    def _fire(self, event: str, step: int, kw: dict[str, Any]) -> list[tuple[int, str, str, float]]:
        unknown = sorted(set(kw) - _EVENT_ARGS)
        if unknown:
            raise TypeError(
                f"monitor.{event}() got unknown argument(s) {', '.join(unknown)}; "
                f"valid: {', '.join(sorted(_EVENT_ARGS))}"
            )
        kw = {"total_steps": self.total_steps, "optimizer": self.optimizer, **kw}
        if kw.get("lr") is None and kw["optimizer"] is not None:
            kw["lr"] = float(kw["optimizer"].param_groups[0]["lr"])
        if event == "after_step":
            self._steps_done = max(self._steps_done, step + 1)
        return self.fire(event, Context(model=self.model, step=step, **kw))

    def start(self, **kw: Any) -> list[tuple[int, str, str, float]]:
        return self._fire("start", 0, kw)

    def after_backward(self, step: int, **kw: Any) -> list[tuple[int, str, str, float]]:
        return self._fire("after_backward", step, kw)

    def after_step(self, step: int, **kw: Any) -> list[tuple[int, str, str, float]]:
        return self._fire("after_step", step, kw)

    def eval(
        self, step: int, metrics: dict[str, float], **kw: Any
    ) -> list[tuple[int, str, str, float]]:
        return self._fire("eval", step, {"metrics": metrics, **kw})

    def end(self, step: int, **kw: Any) -> list[tuple[int, str, str, float]]:
        return self._fire("end", step, kw)

    def flush(self) -> None:
        """Sends the pending rows to the sinks and flushes them."""
        self._drain()
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        """Flushes and closes every sink (e.g. a TensorBoard writer)."""
        self._drain()
        for sink in self.sinks:
            sink.close()

    def frame(self, pivot: bool = False) -> pd.DataFrame:
        """All records so far, from the first `MemorySink` among the sinks.

        Args:
            pivot: False: the tidy table (columns step, metric, key, value), one row per
                record. True: the wide view (`normtheory.hooks.sinks.pivot_records`), indexed
                by step, one column per metric and key (``metric``, or ``metric/key`` when the
                key is not empty), NaN where nothing was recorded.
        """
        memory = next((s for s in self.sinks if isinstance(s, MemorySink)), None)
        if memory is None:
            raise ValueError(
                "frame() reads a MemorySink, and this Monitor has none; add MemorySink() to sinks"
            )
        self._drain()
        frame = memory.frame()
        return pivot_records(frame) if pivot else frame

    # -- context-manager use in a plain loop ----------------------------------------------------

    def __enter__(self) -> "Monitor":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """On a normal exit fires ``end`` at the number of steps taken (1 + the last step given
        to `after_step`); always closes the sinks, so the rows recorded so far are kept even
        when the loop raised (which then propagates)."""
        try:
            if exc_type is None:
                self.end(self._steps_done)
        finally:
            self.close()

    @contextmanager
    def step(self, step: int, *, batch: Any = None, **kw: Any) -> Iterator["Monitor"]:
        """Wraps one optimizer step: ``after_backward`` on entry, ``after_step`` on exit.

        Enter it after ``loss.backward()`` and step the optimizer inside::

            with monitor.step(step, batch=(x, y), loss=loss, outputs=out):
                opt.step()

        Both events get the same arguments, and the learning rate read on entry (the one the
        step uses, before any scheduler moves it). If the body raises, ``after_step`` is not
        fired (no step was taken) and the exception propagates.

        Args:
            step: the optimizer step (0-based).
            batch: the training batch, for the context's ``inputs``/``targets``: a tensor (the
                inputs) or a tuple/list ``(inputs, targets, ...)``; the inputs must be the very
                tensor the model was called on (`OrthogonalWeightNorm` matches it by identity).
            **kw: any other event argument (``loss``, stored detached; ``outputs``, ``lr``,
                ``optimizer``, ``extras``, ...).
        """
        kw = {**_batch_args(batch), **kw}
        if kw.get("loss") is not None and isinstance(kw["loss"], torch.Tensor):
            kw["loss"] = kw["loss"].detach()
        optimizer = kw.get("optimizer", self.optimizer)
        if kw.get("lr") is None and optimizer is not None:
            kw["lr"] = float(optimizer.param_groups[0]["lr"])
        self.after_backward(step, **kw)
        yield self
        self.after_step(step, **kw)


_LAZY = (torch.Tensor, Deferred)


def _materialize(rows: list) -> list[tuple[int, str, str, float]]:
    """`rows` with their lazy values (0-dim tensors, `Deferred`) as floats, each the float
    ``float(value)`` gives: one ``cat(...).tolist()``, a single host synchronization (cat
    promotes floating dtypes exactly; lazy values are floating-point); value by value where
    the tensors do not concatenate (several devices)."""
    idx = [i for i, row in enumerate(rows) if isinstance(row[3], _LAZY)]
    if not idx:
        return rows
    rows = list(rows)
    offsets: dict[int, int] = {}
    parts: list[torch.Tensor] = []
    where: list[int] = []
    size = 0
    for i in idx:
        value = rows[i][3]
        if isinstance(value, Deferred):
            base = offsets.get(id(value.values))
            if base is None:
                base = offsets[id(value.values)] = size
                parts.append(value.values)
                size += value.values.numel()
            where.append(base + value.index)
        else:
            parts.append(value.reshape(1))
            where.append(size)
            size += 1
    try:
        flat = torch.cat(parts).tolist()
        values = [flat[k] for k in where]
    except RuntimeError:  # several devices
        values = [float(rows[i][3]) for i in idx]
    for i, v in zip(idx, values, strict=True):
        row = rows[i]
        rows[i] = (row[0], row[1], row[2], float(v))
    return rows


def _batch_args(batch: Any) -> dict[str, Any]:
    """``inputs``/``targets`` event arguments from a batch given to `Monitor.step`."""
    if batch is None:
        return {}
    if isinstance(batch, torch.Tensor):
        return {"inputs": batch}
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return {"inputs": batch[0], **({"targets": batch[1]} if len(batch) > 1 else {})}
    raise TypeError(
        f"batch must be a tensor or a tuple/list (inputs, targets, ...), got "
        f"{type(batch).__name__}; pass inputs= and targets= to monitor.step instead"
    )


def rename(metric: str, name: str) -> str:
    """The stored name of `metric` (a hook's constant, ``"<default name>.<metric>"``) when the
    hook instance is called `name`: ``rename(HessianSpectrum.EIG, "eig_eval") == "eig_eval.eig"``.
    """
    prefix, dot, short = metric.partition(".")
    if not dot or not short:
        raise ValueError(f"metric {metric!r} is not of the form '<hook name>.<metric>'")
    return f"{name}.{short}"
