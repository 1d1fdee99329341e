"""Scale-invariance diagnostics of the weights while training (SI-ORTH, SI-GROWTH, effective
learning rate); the input-span hook (SPAN-ORTH) is `normtheory.hooks.orthogonal`.

The hook only reads: it copies the weights and gradients it needs and never writes to the model,
its gradients, its buffers or the RNG.
"""

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from normtheory.batches import as_model_loss
from normtheory.hooks.base import Context, Every, Hook, Record
from normtheory.measure.scale_invariant import find_scale_invariant
from normtheory.measure.weights import growth_residual, scale_invariance_cosine


def _example(ctx: Context) -> dict:
    """How `find_scale_invariant` runs the model: a `build_model` model from its config, else
    on ``ctx.inputs`` (any structure), else the loop's loss on ``ctx.batch``."""
    if getattr(ctx.model, "config", None) and isinstance(ctx.model.config, dict):
        return {}
    if ctx.inputs is None and ctx.batch is not None and ctx.loss_fn is not None:
        loss, batch = as_model_loss(ctx.loss_fn), ctx.batch
        return {"forward": lambda model: loss(model, batch)}
    return {"example_input": ctx.inputs}


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
            `find_scale_invariant` reports (found at the first step, from the model's config,
            else from ``ctx.inputs`` of any structure, else from ``ctx.loss_fn`` on
            ``ctx.batch``): BN, GN, LN, RMSNorm, torch's norms, per-token norms.
        name: the metric prefix (default 'scale_inv').
        every: the schedule (`Hook`; default every step).
    """

    events = ("after_backward", "after_step")
    default_name = "scale_inv"
    PREFIX = "scale_inv."
    COSINE = "scale_inv.cosine"
    COSINE_CHANNEL = "scale_inv.cosine_channel"
    NORM = "scale_inv.norm"
    EFFECTIVE_LR = "scale_inv.effective_lr"
    EFFECTIVE_LR_CHANNEL = "scale_inv.effective_lr_channel"
    RESIDUAL = "scale_inv.residual"
    RESIDUAL_CHANNEL = "scale_inv.residual_channel"
    METRICS = (
        COSINE,
        COSINE_CHANNEL,
        NORM,
        EFFECTIVE_LR,
        EFFECTIVE_LR_CHANNEL,
        RESIDUAL,
        RESIDUAL_CHANNEL,
    )

    def __init__(
        self, *, params: Iterable[str] | None = None, name: str | None = None, every: Every = 1
    ):
        super().__init__(name=name, every=every)
        self.params = None if params is None else list(params)
        self._names: list[str] | None = None
        self._before: dict[str, tuple[Tensor, Tensor]] = {}

    def _resolve(self, ctx: Context) -> dict[str, nn.Parameter]:
        named = dict(ctx.model.named_parameters())
        if self._names is None:
            if self.params is None:
                found = find_scale_invariant(ctx.model, **_example(ctx))
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
