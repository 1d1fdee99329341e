"""Basic hooks: training/evaluation loss and accuracy, weight norms, gradient norms."""

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from normtheory.hooks.base import Context, Deferred, Every, Hook, Record
from normtheory.measure.outcomes import check_eval_data, evaluate


class LossAccuracy(Hook):
    """Records the training batch's loss/accuracy and the loop's evaluation metrics.

    Metrics: ``<name>.train_loss``, ``<name>.train_acc`` (after_step, from the batch the step
    used), ``<name>.test_loss``/``test_acc`` (any ``ctx.metrics`` at the eval event). With
    `data`, it also evaluates the model on that dataset on its schedule (``data_loss``,
    ``data_acc``): that is how to use it in your own loop.

    Args:
        data: evaluation data for your own loop: a tuple ``(inputs, targets)`` of tensors, a
            `TensorDataset`, a Dataset of (x, y) pairs or a DataLoader; None: no evaluation.
        loss_fn: ``loss_fn(outputs, targets) -> mean loss`` for `data` (cross-entropy).
        name: the metric prefix (default 'outcome').
        every: the schedule (`Hook`; default every step).
    """

    events = ("after_step", "eval")
    lazy = True
    default_name = "outcome"
    PREFIX = "outcome."
    TRAIN_LOSS = "outcome.train_loss"
    TRAIN_ACC = "outcome.train_acc"
    TEST_LOSS = "outcome.test_loss"
    TEST_ACC = "outcome.test_acc"
    DATA_LOSS = "outcome.data_loss"
    DATA_ACC = "outcome.data_acc"
    METRICS = (TRAIN_LOSS, TRAIN_ACC, TEST_LOSS, TEST_ACC, DATA_LOSS, DATA_ACC)

    def __init__(
        self,
        *,
        data=None,
        loss_fn: Callable = F.cross_entropy,
        name: str | None = None,
        every: Every = 1,
    ):
        super().__init__(name=name, every=every)
        if data is not None:
            check_eval_data(data)  # a wrong kind fails here, naming the kinds it takes
        self.data = data
        self.loss_fn = loss_fn

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        if event == "eval":
            return [(metric, "", value) for metric, value in ctx.metrics.items()]
        records = []
        if ctx.loss is not None:
            loss = ctx.loss
            records.append(("train_loss", "", loss.detach() if torch.is_tensor(loss) else loss))
        outputs = ctx.outputs
        if isinstance(outputs, torch.Tensor) and ctx.targets is not None and outputs.ndim == 2:
            outputs = ctx.outputs.detach()
            records.append(("train_acc", "", (outputs.argmax(dim=1) == ctx.targets).float().mean()))
        if self.data is not None:
            result = evaluate(ctx.model, self.data, loss_fn=self.loss_fn)
            records += [("data_loss", "", result["loss"]), ("data_acc", "", result["acc"])]
        return records


def _named_weights(model: torch.nn.Module, params: Iterable[str] | None):
    named = dict(model.named_parameters())
    if params is None:
        return [(n, p) for n, p in named.items() if p.ndim >= 2]
    missing = [n for n in params if n not in named]
    if missing:
        raise ValueError(f"unknown parameters {missing}; the model has: {', '.join(named)}")
    return [(n, named[n]) for n in params]


def _groups(params: list[torch.Tensor]) -> list[list[int]]:
    """Indices of `params` grouped by (device, dtype): one ``torch._foreach_norm`` each (a
    gradient has its parameter's device and dtype)."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        groups.setdefault((p.device, p.dtype), []).append(i)
    return list(groups.values())


def _norms(tensors: list[torch.Tensor], groups: list[list[int]]) -> list[torch.Tensor]:
    """The L2 norm of each tensor as a fresh 0-dim tensor: one ``torch._foreach_norm`` per
    group of `_groups` instead of one kernel launch and one host sync per tensor."""
    if len(groups) == 1:
        return _foreach_norm(tensors)
    out: list[torch.Tensor | None] = [None] * len(tensors)
    for idx in groups:
        for i, v in zip(idx, _foreach_norm([tensors[i] for i in idx]), strict=True):
            out[i] = v
    return out


def _foreach_norm(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    try:
        return list(torch._foreach_norm(tensors))
    except (RuntimeError, NotImplementedError):  # e.g. sparse gradients
        return [t.coalesce().values().norm() if t.is_sparse else t.norm() for t in tensors]


class _Cache:
    """A hook's named tensors of the last model it saw, with their `_groups`."""

    def __init__(self, model: torch.nn.Module, named: list):
        self.model, self.named = model, named
        self.tensors = [p for _, p in named]
        self.groups = _groups(self.tensors)


def _cached(hook: Hook, model: torch.nn.Module, named) -> _Cache:
    """The hook's `_Cache` for `model`, built (by calling `named()`) once per model."""
    cache = getattr(hook, "_cache", None)
    if cache is None or cache.model is not model:
        cache = hook._cache = _Cache(model, named())
    return cache


class WeightNorm(Hook):
    """L2 norm ‖w‖ of each weight tensor (default: every parameter with ndim ≥ 2), key = name.

    Args:
        params: parameter names (default: every parameter with ndim ≥ 2).
        name: the metric prefix (default 'weight_norm').
        every: the schedule (`Hook`; default every step).
    """

    events = ("start", "after_step")
    lazy = True
    default_name = "weight_norm"
    PREFIX = "weight_norm."
    L2 = "weight_norm.l2"
    METRICS = (L2,)

    def __init__(
        self, *, params: Iterable[str] | None = None, name: str | None = None, every: Every = 1
    ):
        super().__init__(name=name, every=every)
        self.params = None if params is None else list(params)

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        cache = _cached(self, ctx.model, lambda: _named_weights(ctx.model, self.params))
        with torch.no_grad():
            norms = torch.stack(_norms(cache.tensors, cache.groups))
        return [("l2", n, Deferred(norms, i)) for i, (n, _) in enumerate(cache.named)]


class GradNorm(Hook):
    """L2 norm of each parameter's gradient after backward (key = name) and the total norm.

    Args:
        params: parameter names (default: all with a gradient).
        name: the metric prefix (default 'grad_norm').
        every: the schedule (`Hook`; default every step).
    """

    events = ("after_backward",)
    lazy = True
    default_name = "grad_norm"
    PREFIX = "grad_norm."
    L2 = "grad_norm.l2"
    METRICS = (L2,)

    def __init__(
        self, *, params: Iterable[str] | None = None, name: str | None = None, every: Every = 1
    ):
        super().__init__(name=name, every=every)
        self.params = None if params is None else list(params)

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        cache = _cached(
            self,
            ctx.model,
            lambda: (
                list(ctx.model.named_parameters())
                if self.params is None
                else _named_weights(ctx.model, self.params)
            ),
        )
        grads = [p.grad for p in cache.tensors]
        named, groups = cache.named, cache.groups
        if any(g is None for g in grads):  # some parameters took no part: the slow path
            named = [(n, p) for n, p in named if p.grad is not None]
            grads = [p.grad for _, p in named]
            groups = _groups(grads)
        if not named:
            return [("l2", "total", 0.0)]
        with torch.no_grad():
            norms = torch.stack(_norms(grads, groups))
            total = torch.linalg.vector_norm(norms, dtype=torch.float64)
        return [("l2", n, Deferred(norms, i)) for i, (n, _) in enumerate(named)] + [
            ("l2", "total", total)
        ]
