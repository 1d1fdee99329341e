"""The weight component outside the input span (SPAN-ORTH), measured while training.

The hook only reads: it copies the inputs and weights it needs and never writes to the model,
its gradients, its buffers or the RNG.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from normtheory.batches import first_tensor
from normtheory.hooks.base import Context, Every, Hook, Record
from normtheory.measure.span import InputSpan, orthogonal_weight_norm

_SPAN_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_MAX_PENDING = 256  # forwards kept waiting for their after_backward before the oldest is dropped


@dataclass
class _Forward:
    """The inputs every watched layer received during one forward of the model."""

    model_input: object
    inputs: dict[str, list[Tensor]] = field(default_factory=dict)


def _weight_layers(model: nn.Module, names: Iterable[str] | None) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    usable = {
        n: m
        for n, m in modules.items()
        if isinstance(m, _SPAN_LAYERS) and getattr(m, "padding_mode", "zeros") == "zeros"
    }
    if names is None:
        return usable
    bad = [n for n in names if n not in usable]
    if bad:
        raise ValueError(
            f"unknown or unsupported layers {bad}; linear/conv layers of the model: "
            f"{', '.join(usable) or '(none)'}"
        )
    return {n: usable[n] for n in names}


EMPTY_RTOL = 1e-8  # ‖W_0 P⊥‖ / ‖W_0‖ below this: no complement to speak of


class OrthogonalWeightNorm(Hook):
    """‖W P⊥‖: the part of each layer's weight outside the span of the inputs it was trained on.

    From ``start`` on, forward hooks see every forward of the model; at each ``after_backward``
    the layer inputs of the forward on ``ctx.inputs`` (the training batch, of any structure,
    else ``ctx.batch``; matched by the identity of its first tensor with the first tensor the
    model was called with, positional or keyword: ``model(x)``, ``model(**batch)``) are added
    to each layer's `InputSpan` — every step, whatever `every` says, since a missed batch
    would shrink the span. Other forwards (probes, evaluation) are ignored. On
    the schedule (``after_step``) and at ``end`` it records, per layer (key = layer name), with
    P⊥ the projector onto the complement of the span of all inputs seen so far:

    - ``norm``: ‖W_t P⊥‖_F; ``relative``: ‖W_t P⊥‖ / ‖W_t‖;
    - ``ratio``: ‖W_t P⊥‖ / ‖W_0 P⊥‖ — 1 under SGD with or without momentum, (1 − ηλ)^t under
      SGD with coupled weight decay λ (SPAN-ORTH);
    - ``drift``: ‖(W_t − W_0) P⊥‖ / ‖W_0 P⊥‖ — 0 under SGD (rounding only);
    - ``complement_dim``: fan_in − dim(span) (summed over groups);
    - ``updates`` (key ""): the number of training batches seen, i.e. optimizer steps taken
      when recorded at ``after_step`` or ``end`` — the t of (1 − ηλ)^t.

    ``ratio`` and ``drift`` are left out while the complement is empty or W_0's part in it is
    rounding error (below `EMPTY_RTOL` · ‖W_0‖): a ratio of two rounding errors means nothing.

    Cost (`InputSpan`): while a layer's span is not the whole fan-in, one float64 projection of
    its inputs per step (a conv with fan_in filters for a conv layer, no im2col matrix) and a
    small eigendecomposition on the rare steps whose batch has energy outside the span; nothing
    once the span is proven full. A record costs ‖W C‖ per layer with a complement (C the
    complement basis), nothing for a full one. Memory per layer: 2 · fan_in² float64.

    Args:
        layers: names of linear / conv modules; default every one.
        rtol: the span's relative rank tolerance (`InputSpan`).
        name: the metric prefix (default 'orth').
        every: the schedule (`Hook`; default every step; the span is updated every step regardless).

    In your own loop: call ``monitor.start()`` before training and pass the batch you fed the
    model, ``monitor.after_backward(step, inputs=x)``.
    """

    events = ("start", "after_backward", "after_step", "end")
    default_name = "orth"
    PREFIX = "orth."
    NORM = "orth.norm"
    RELATIVE = "orth.relative"
    RATIO = "orth.ratio"
    DRIFT = "orth.drift"
    COMPLEMENT_DIM = "orth.complement_dim"
    UPDATES = "orth.updates"
    METRICS = (NORM, RELATIVE, RATIO, DRIFT, COMPLEMENT_DIM, UPDATES)

    def __init__(
        self,
        *,
        layers: Iterable[str] | None = None,
        rtol: float = 1e-10,
        name: str | None = None,
        every: Every = 1,
    ):
        super().__init__(name=name, every=every)
        self.layer_names = None if layers is None else list(layers)
        self.rtol = rtol
        self.spans: dict[str, InputSpan] = {}
        self._w0: dict[str, Tensor] = {}
        self._layers: dict[str, nn.Module] = {}
        self._pending: list[_Forward] = []
        self._handles: list = []
        self._updates = 0

    def scheduled(self, event: str, step: int, total_steps: int | None = None) -> bool:
        if event == "after_backward":
            return True  # every training batch must reach the span
        return super().scheduled(event, step, total_steps)

    # -- forward hooks ------------------------------------------------------------------------

    def _attach(self, model: nn.Module) -> None:
        self._detach()
        self._layers = _weight_layers(model, self.layer_names)
        self.spans = {n: InputSpan(m, rtol=self.rtol) for n, m in self._layers.items()}
        self._w0 = {
            n: m.weight.detach().to(torch.float64, copy=True) for n, m in self._layers.items()
        }
        self._w0_norm = {n: float(w.norm()) for n, w in self._w0.items()}
        self._start: dict[str, tuple] = {}  # layer -> (span dim, ‖W_0 P⊥‖)
        self._pending, self._updates = [], 0

        def open_forward(module: nn.Module, args: tuple, kwargs: dict) -> None:
            first = first_tensor((args, kwargs))  # model(x), model(**batch), ...
            if first is not None:
                self._pending.append(_Forward(first))
                if len(self._pending) > _MAX_PENDING:
                    del self._pending[0]

        def capture(name: str):
            def hook(module: nn.Module, args: tuple) -> None:
                if self._pending and args:
                    self._pending[-1].inputs.setdefault(name, []).append(args[0].detach())

            return hook

        self._handles = [model.register_forward_pre_hook(open_forward, with_kwargs=True)]
        self._handles += [m.register_forward_pre_hook(capture(n)) for n, m in self._layers.items()]

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _consume(self, ctx: Context) -> None:
        if not self._handles:
            raise RuntimeError(
                f"{self.name}: no forward was watched; fire the 'start' event (monitor.start()) "
                "before training"
            )
        key = first_tensor(ctx.inputs if ctx.inputs is not None else ctx.batch)
        if key is None:
            raise ValueError(
                f"{self.name} needs the training batch at after_backward: pass inputs=x "
                "(what the model was called on) or batch= to monitor.after_backward"
            )
        match = next((f for f in self._pending if f.model_input is key), None)
        self._pending = []
        if match is None:
            raise ValueError(
                f"{self.name}: no forward of the model on ctx.inputs was seen since the last "
                "step; pass what you called the model with (the very tensors) as inputs="
            )
        for name, xs in match.inputs.items():
            for x in xs:
                self.spans[name].update(x)
        self._updates += 1

    # -- records ------------------------------------------------------------------------------

    def _records(self) -> list[Record]:
        records: list[Record] = [("updates", "", self._updates)]
        for name, layer in self._layers.items():
            span = self.spans[name]
            dims = span.dim
            complement = span.groups * span.fan_in - (sum(dims) if isinstance(dims, list) else dims)
            if complement == 0:  # P⊥ = 0: ‖W P⊥‖ = 0, no ratio (as orthogonal_weight_norm says)
                records += [
                    ("norm", name, 0.0),
                    ("relative", name, 0.0),
                    ("complement_dim", name, 0),
                ]
                continue
            now = orthogonal_weight_norm(layer.weight, span)
            start = self._start_norm(name, span)
            records += [
                ("norm", name, now.total),
                ("relative", name, now.relative),
                ("complement_dim", name, complement),
            ]
            if start > EMPTY_RTOL * self._w0_norm[name]:
                delta = layer.weight.detach().to(torch.float64) - self._w0[name]
                drift = orthogonal_weight_norm(delta, span).total
                records += [
                    ("ratio", name, now.total / start),
                    ("drift", name, drift / start),
                ]
        return records

    def _start_norm(self, name: str, span: InputSpan) -> float:
        """‖W_0 P⊥‖, recomputed only when the span has grown (P⊥ changes only then)."""
        cached = self._start.get(name)
        if cached is None or cached[0] != span.dim:
            cached = (span.dim, orthogonal_weight_norm(self._w0[name], span).total)
            self._start[name] = cached
        return cached[1]

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        if event == "start":
            self._attach(ctx.model)
            return []
        if event == "after_backward":
            self._consume(ctx)
            return []
        if event == "end":
            try:
                return self._records() if self._handles else []
            finally:
                self._detach()
        return self._records()
