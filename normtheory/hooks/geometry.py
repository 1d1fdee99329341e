"""Weight-geometry hooks: the weight component outside the input span (SPAN-ORTH) and the
scale-invariance diagnostics (SI-ORTH, SI-GROWTH, effective learning rate).

Both only read: they copy the weights and gradients they need and never write to the model,
its gradients, its buffers or the RNG.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from normtheory.hooks.base import Context, Hook, Record
from normtheory.measure.span import InputSpan, orthogonal_weight_norm
from normtheory.measure.weights import (
    find_scale_invariant,
    growth_residual,
    scale_invariance_cosine,
)

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


class OrthogonalWeightNorm(Hook):
    """‖W P⊥‖: the part of each layer's weight outside the span of the inputs it was trained on.

    From ``start`` on, forward hooks see every forward of the model; at each ``after_backward``
    the layer inputs of the forward on ``ctx.inputs`` (the training batch, matched by tensor
    identity) are added to each layer's `InputSpan` — every step, whatever `every` says, since
    a missed batch would shrink the span. Other forwards (probes, evaluation) are ignored. On
    the schedule (``after_step``) and at ``end`` it records, per layer (key = layer name), with
    P⊥ the projector onto the complement of the span of all inputs seen so far:

    - ``norm``: ‖W_t P⊥‖_F; ``relative``: ‖W_t P⊥‖ / ‖W_t‖;
    - ``ratio``: ‖W_t P⊥‖ / ‖W_0 P⊥‖ — 1 under SGD with or without momentum, (1 − ηλ)^t under
      SGD with coupled weight decay λ (SPAN-ORTH);
    - ``drift``: ‖(W_t − W_0) P⊥‖ / ‖W_0 P⊥‖ — 0 under SGD (rounding only);
    - ``complement_dim``: fan_in − dim(span) (summed over groups);
    - ``updates`` (key ""): the number of training batches seen, i.e. optimizer steps taken
      when recorded at ``after_step`` or ``end`` — the t of (1 − ηλ)^t.

    ``ratio`` and ``drift`` are left out while the complement is empty or W_0 has no part in it.

    Cost: one float64 Gram update per layer and step (a GEMM of the layer's input patches), and
    an eigendecomposition of each fan_in × fan_in Gram per recorded step.

    Args:
        layers: names of linear / conv modules; default every one.
        rtol: the span's relative rank tolerance (`InputSpan`).

    In your own loop: call ``monitor.start()`` before training and pass the batch you fed the
    model, ``monitor.after_backward(step, inputs=x)``.
    """

    events = ("start", "after_backward", "after_step", "end")
    default_name = "orth"

    def __init__(self, *, layers: Iterable[str] | None = None, rtol: float = 1e-10, **kw):
        super().__init__(**kw)
        self.layer_names = None if layers is None else list(layers)
        self.rtol = rtol
        self.spans: dict[str, InputSpan] = {}
        self._w0: dict[str, Tensor] = {}
        self._layers: dict[str, nn.Module] = {}
        self._pending: list[_Forward] = []
        self._handles: list = []
        self._updates = 0

    def scheduled(self, event: str, step: int) -> bool:
        if event == "after_backward":
            return True  # every training batch must reach the span
        return super().scheduled(event, step)

    # -- forward hooks ------------------------------------------------------------------------

    def _attach(self, model: nn.Module) -> None:
        self._detach()
        self._layers = _weight_layers(model, self.layer_names)
        self.spans = {n: InputSpan(m, rtol=self.rtol) for n, m in self._layers.items()}
        self._w0 = {
            n: m.weight.detach().to(torch.float64, copy=True) for n, m in self._layers.items()
        }
        self._pending, self._updates = [], 0

        def open_forward(module: nn.Module, args: tuple) -> None:
            if args and isinstance(args[0], Tensor):
                self._pending.append(_Forward(args[0]))
                if len(self._pending) > _MAX_PENDING:
                    del self._pending[0]

        def capture(name: str):
            def hook(module: nn.Module, args: tuple) -> None:
                if self._pending and args:
                    self._pending[-1].inputs.setdefault(name, []).append(args[0].detach())

            return hook

        self._handles = [model.register_forward_pre_hook(open_forward)]
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
        if ctx.inputs is None:
            raise ValueError(
                f"{self.name} needs the training batch at after_backward: pass inputs=x "
                "(the tensor given to the model) to monitor.after_backward"
            )
        match = next((f for f in self._pending if f.model_input is ctx.inputs), None)
        self._pending = []
        if match is None:
            raise ValueError(
                f"{self.name}: no forward of the model on ctx.inputs was seen since the last "
                "step; pass the very tensor you called the model with as inputs="
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
            now = orthogonal_weight_norm(layer.weight, span)
            start = orthogonal_weight_norm(self._w0[name], span)
            dims = now.complement_dim
            records += [
                ("norm", name, now.total),
                ("relative", name, now.relative),
                ("complement_dim", name, sum(dims) if isinstance(dims, list) else dims),
            ]
            if start.total > 0:
                delta = layer.weight.detach().to(torch.float64) - self._w0[name]
                drift = orthogonal_weight_norm(delta, span).total
                records += [
                    ("ratio", name, now.total / start.total),
                    ("drift", name, drift / start.total),
                ]
        return records

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


class ScaleInvariance(Hook):
    """SI-ORTH and SI-GROWTH diagnostics of the scale-invariant weights, per optimizer step.

    At ``after_backward`` (on schedule) it copies w_t and the loss gradient g_t; at the
    ``after_step`` that follows it records, per weight (key = parameter name):

    - ``cosine``: cos(w_t, g_t) of the whole tensor (0 under SI-ORTH); ``cosine_channel``: the
      largest |cos| over output rows (0 only for per-channel invariance, e.g. BN, not GN);
    - ``norm``: ‖w_{t+1}‖; ``effective_lr``: η/‖w_{t+1}‖²; ``effective_lr_channel``: the mean
      over rows of η/‖w_{t+1,o}‖² (η from the weight's optimizer group, else ``ctx.lr``);
    - ``residual``: the relative SI-GROWTH residual (‖w_{t+1}‖² − (1 − ηλ)²‖w_t‖² − η²‖g_t‖²)
      / ‖w_{t+1}‖², and ``residual_channel``: the largest |relative residual| over rows. Only
      for a plain SGD step (``torch.optim.SGD`` with momentum 0) without weight rescaling, where
      the identity applies; η and λ are read from the weight's optimizer parameter group.

    Args:
        params: module names (their ``.weight``) or parameter names; default: the weights
            `find_scale_invariant` reports (found at the first step, from ``ctx.inputs``).
    """

    events = ("after_backward", "after_step")
    default_name = "scale_inv"

    def __init__(self, *, params: Iterable[str] | None = None, **kw):
        super().__init__(**kw)
        self.params = None if params is None else list(params)
        self._names: list[str] | None = None
        self._before: dict[str, tuple[Tensor, Tensor]] = {}

    def _resolve(self, ctx: Context) -> dict[str, nn.Parameter]:
        named = dict(ctx.model.named_parameters())
        if self._names is None:
            if self.params is None:
                example = None if getattr(ctx.model, "config", None) else ctx.inputs
                found = find_scale_invariant(ctx.model, example)
                self._names = [f"{n}.weight" if n else "weight" for n in found]
            else:
                modules = dict(ctx.model.named_modules())
                names = []
                for n in self.params:
                    if n in named:
                        names.append(n)
                    elif n in modules and isinstance(getattr(modules[n], "weight", None), Tensor):
                        names.append(f"{n}.weight" if n else "weight")
                    else:
                        raise ValueError(
                            f"{n!r} is neither a parameter nor a module with a weight; "
                            f"parameters: {', '.join(named)}"
                        )
                self._names = names
        return {n: named[n] for n in self._names}

    @staticmethod
    def _group(ctx: Context, param: Tensor) -> dict | None:
        """The optimizer parameter group holding `param`, if the context has an optimizer."""
        groups = ctx.optimizer.param_groups if ctx.optimizer is not None else []
        return next((g for g in groups if any(p is param for p in g["params"])), None)

    def _plain_sgd(self, ctx: Context, group: dict | None) -> tuple[float, float] | None:
        """(η, λ) of the group when the step was plain SGD without rescaling, else None."""
        if (
            group is None
            or not isinstance(ctx.optimizer, torch.optim.SGD)
            or ctx.extras.get("rescaled")
            or group.get("momentum", 0) != 0
        ):
            return None
        return float(group["lr"]), float(group.get("weight_decay", 0.0))

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        params = self._resolve(ctx)
        if event == "after_backward":
            self._before = {
                n: (p.detach().clone(), p.grad.detach().clone())
                for n, p in params.items()
                if p.grad is not None
            }
            return []
        records: list[Record] = []
        for name, (w0, g) in self._before.items():
            w1 = params[name].detach()
            cos = scale_invariance_cosine(w0, g)
            group = self._group(ctx, params[name])
            sgd = self._plain_sgd(ctx, group)
            lr = float(group["lr"]) if group else (ctx.lr if ctx.lr is not None else math.nan)
            rows_sq = w1.reshape(w1.shape[0], -1).double().square().sum(1)
            records += [
                ("cosine", name, cos.total),
                ("cosine_channel", name, float(cos.per_channel.abs().max())),
                ("norm", name, float(rows_sq.sum().sqrt())),
                ("effective_lr", name, lr / float(rows_sq.sum())),
                ("effective_lr_channel", name, float((lr / rows_sq).mean())),
            ]
            if sgd is not None:
                rel = dict(lr=sgd[0], weight_decay=sgd[1], relative=True)
                per_row = growth_residual(w0, w1, g, per_channel=True, **rel)
                records += [
                    ("residual", name, growth_residual(w0, w1, g, **rel)),
                    ("residual_channel", name, float(per_row.abs().max())),
                ]
        self._before = {}
        return records
