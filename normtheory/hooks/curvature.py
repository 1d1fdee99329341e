"""Curvature hooks: Hessian spectrum, trace, density and gradient smoothness on a fixed probe batch.

Each hook measures on the same probe batch every time (by default the first training batch it
sees, copied), so values along training are comparable. They run on their schedule (`every`:
an int, a callable or a `normtheory.hooks.schedule` schedule; default never) and/or once at the
end of training (`at_end=True`, or ``every=at_end()`` alone). Measurements leave the model,
`.grad`, buffers and RNG state untouched (see `normtheory.measure.curvature`).

`HessianSpectrum` and `Smoothness` take ``invariant=True`` to measure in the scale-invariant
metric D of `normtheory.measure.scale_invariant.invariant_metric` (the weights' groups found on
the probe batch at each call): λ_max(D H D) and β in the coordinates D⁻¹ w, unchanged when a
scale-invariant weight is rescaled; give such an instance its own ``name``.
"""

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from normtheory.batches import as_model_loss, detached, is_single_batch, to_device
from normtheory.checks import check_choice
from normtheory.hooks.base import Context, Every, Hook, Record
from normtheory.measure._functional import select_params
from normtheory.measure.curvature import hessian_density, hessian_eigenvalues
from normtheory.measure.landscape import gradient_smoothness
from normtheory.measure.scale_invariant import invariant_metric
from normtheory.measure.trace import TRACE_METHODS, hessian_trace


def _never(step: int) -> bool:
    return False


class _CurvatureHook(Hook):
    """Shared plumbing: probe batch, mode, parameter subset, schedule with optional end-of-run
    (skipped when the run diverged: `Hook.trained_only`)."""

    trained_only = True

    def __init__(
        self,
        *,
        probe: object = None,
        mode: str = "train",
        params: Sequence[str] | None = None,
        loss_fn: Callable = F.cross_entropy,
        every: Every | None = None,
        at_end: bool = False,
        name: str | None = None,
    ):
        if mode not in ("train", "eval"):
            raise ValueError(f"unknown mode {mode!r}; valid: train, eval")
        self.events = ("after_step", "end") if at_end else ("after_step",)
        super().__init__(name=name, every=_never if every is None else every)
        self.probe, self.mode, self.params, self.loss_fn = probe, mode, params, loss_fn

    def _data(self, ctx: Context):
        """The probe on the model's device: one batch (moved), or an iterable of batches
        (streamed by the measure). Default: a copy of the first training batch seen,
        ``ctx.batch`` or else ``(ctx.inputs, ctx.targets)``."""
        if self.probe is None:
            if ctx.batch is not None:
                self.probe = detached(ctx.batch)
            elif ctx.inputs is not None:
                self.probe = detached((ctx.inputs, ctx.targets))
            else:
                raise ValueError(
                    f"{self.name} ({type(self).__name__}) needs a batch: pass probe= to it, or "
                    "batch= (or inputs= and targets=) to the event"
                )
        if not is_single_batch(self.probe):
            return self.probe
        return to_device(self.probe, next(ctx.model.parameters()).device)

    def _kw(self) -> dict:
        return {"mode": self.mode, "params": self.params}

    def _metric(self, ctx: Context, data, invariant: bool) -> dict | None:
        """The scale-invariant metric D at the current weights, or None (raw weight space);
        the weights' groups are read from one forward of the loss on (the first batch of) the
        probe."""
        if not invariant:
            return None
        batch = data if is_single_batch(data) else next(iter(data))
        loss = as_model_loss(self.loss_fn)
        return invariant_metric(ctx.model, forward=lambda model: loss(model, batch))


def _lr(hook, ctx: Context) -> float:
    """The step size of `Smoothness` / `OneStepLoss`: theirs, else the loop's (``ctx.lr``)."""
    lr = hook.lr if hook.lr is not None else ctx.lr
    if lr is None:
        raise ValueError(
            f"{hook.name} ({type(hook).__name__}) needs a learning rate: pass lr= to it, or "
            "optimizer= to the Monitor (or lr= / optimizer= to the event)"
        )
    return float(lr)


class HessianSpectrum(_CurvatureHook):
    """Top-k Hessian eigenvalues (Lanczos). Metrics: ``eig`` (key = rank 1..k), ``n_hvp``, ``converged``.

    With ``warm_start`` each call starts Lanczos from the sum of the k eigenvectors the
    previous call found (kept on the hook, one set per instance, so per parameter subset):
    along training they turn slowly, and a start close to the wanted eigenvectors reaches
    `tol` with far fewer Hessian-vector products (``n_hvp``) than a random one. The values
    meet the same residual tolerance either way. The first call, and any call after the
    parameter count changed, starts from a random vector.

    Args:
        k: how many eigenvalues; which: ``"largest"``, ``"magnitude"`` or ``"smallest"``; tol:
            Lanczos' relative convergence tolerance.
        invariant: eigenvalues of D H D, D = `invariant_metric` (scale-invariant) instead of H.
        warm_start: start each call from the previous call's eigenvectors (default False: a
            random start every call, the same seed each time — a warm start nearly orthogonal to
            a new top eigenvector can settle on another eigenpair, and the studies' reference
            numbers are made with random starts).
        probe: the fixed data: one batch of any structure (``(inputs, targets)``, a dict, ...)
            or a re-iterable of batches (a list, a DataLoader: the dataset-wide measure,
            streamed); default: the first training batch seen.
        mode: ``"train"`` (batch statistics, fixed dropout masks, as the net trains) or
            ``"eval"``.
        params: names of the parameters the measure is over (default: all).
        loss_fn: ``loss_fn(outputs, targets)`` (default cross-entropy) or
            ``loss_fn(model, batch)`` -> mean loss (`normtheory.batches`).
        every: the schedule (`Hook`); default: never during training (then use `at_end`).
        at_end: also measure at the ``end`` event.
        at_start: also measure at the ``start`` event (at initialization, recorded at step 0;
            needs `probe`).
        name: the metric prefix (default 'hessian').
    """

    default_name = "hessian"
    PREFIX = "hessian."
    EIG = "hessian.eig"
    N_HVP = "hessian.n_hvp"
    CONVERGED = "hessian.converged"
    METRICS = (EIG, N_HVP, CONVERGED)

    def __init__(
        self,
        *,
        k: int = 1,
        which: str = "largest",
        tol: float = 1e-3,
        invariant: bool = False,
        warm_start: bool = False,
        probe: object = None,
        mode: str = "train",
        params: Sequence[str] | None = None,
        loss_fn: Callable = F.cross_entropy,
        every: Every | None = None,
        at_end: bool = False,
        at_start: bool = False,
        name: str | None = None,
    ):
        super().__init__(
            probe=probe, mode=mode, params=params, loss_fn=loss_fn, every=every, at_end=at_end,
            name=name,
        )  # fmt: skip
        if at_start:
            self.events = ("start", *self.events)
        self.k, self.which, self.tol, self.invariant = k, which, tol, invariant
        self.warm_start = warm_start
        self._vectors: torch.Tensor | None = None  # (n, k) eigenvectors of the last call

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        data = self._data(ctx)
        res = hessian_eigenvalues(
            ctx.model,
            self.loss_fn,
            data,
            k=self.k,
            which=self.which,
            tol=self.tol,
            metric=self._metric(ctx, data, self.invariant),
            start=self._start(ctx),
            return_vectors=self.warm_start,
            **self._kw(),
        )
        if self.warm_start:
            self._vectors = res.vectors
        rows = [("eig", str(i + 1), float(v)) for i, v in enumerate(res.values)]
        return rows + [("n_hvp", "", res.n_hvp), ("converged", "", float(res.converged))]

    def _start(self, ctx: Context) -> torch.Tensor | None:
        """The previous eigenvectors if warm-starting and the parameter count is unchanged."""
        if self._vectors is None:
            return None
        params = dict(ctx.model.named_parameters())
        names = select_params(ctx.model, self.params)
        n = sum(params[name].numel() for name in names)
        return self._vectors if self._vectors.shape[0] == n else None


class HessianTrace(_CurvatureHook):
    """Hessian trace by Hutch++ (or XTrace, Hutchinson). Metrics: ``trace``, ``stderr``,
    ``n_hvp`` (`normtheory.measure.trace.hessian_trace`).

    Args:
        method: ``"hutch++"``, ``"xtrace"`` (lower error per product; a conservative jackknife
            stderr) or ``"hutchinson"``; n_hvp: Hessian-vector products to spend.
        probe: the fixed data: one batch of any structure (``(inputs, targets)``, a dict, ...)
            or a re-iterable of batches (a list, a DataLoader: the dataset-wide measure,
            streamed); default: the first training batch seen.
        mode: ``"train"`` (batch statistics, fixed dropout masks, as the net trains) or
            ``"eval"``.
        params: names of the parameters the measure is over (default: all).
        loss_fn: ``loss_fn(outputs, targets)`` (default cross-entropy) or
            ``loss_fn(model, batch)`` -> mean loss (`normtheory.batches`).
        every: the schedule (`Hook`); default: never during training (then use `at_end`).
        at_end: also measure at the ``end`` event.
        name: the metric prefix (default 'hessian_trace').
    """

    default_name = "hessian_trace"
    PREFIX = "hessian_trace."
    TRACE = "hessian_trace.trace"
    STDERR = "hessian_trace.stderr"
    N_HVP = "hessian_trace.n_hvp"
    METRICS = (TRACE, STDERR, N_HVP)

    def __init__(
        self,
        *,
        method: str = "hutch++",
        n_hvp: int = 60,
        probe: object = None,
        mode: str = "train",
        params: Sequence[str] | None = None,
        loss_fn: Callable = F.cross_entropy,
        every: Every | None = None,
        at_end: bool = False,
        name: str | None = None,
    ):
        super().__init__(
            probe=probe, mode=mode, params=params, loss_fn=loss_fn, every=every, at_end=at_end,
            name=name,
        )  # fmt: skip
        check_choice("method", method, TRACE_METHODS)  # here, not at the first measurement
        self.method, self.n_hvp = method, n_hvp

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        res = hessian_trace(
            ctx.model,
            self.loss_fn,
            self._data(ctx),
            method=self.method,
            n_hvp=self.n_hvp,
            **self._kw(),
        )
        return [("trace", "", res.value), ("stderr", "", res.stderr), ("n_hvp", "", res.n_hvp)]


class HessianDensity(_CurvatureHook):
    """Spectral density by stochastic Lanczos quadrature.

    Metrics: ``node`` and ``weight`` with key ``"<run>:<i>"`` (the quadrature rule, so figures can
    smooth it at any width), ``n_hvp``.

    Args:
        n_iter: Lanczos steps per run; n_runs: random starting vectors (runs) averaged.
        probe: the fixed data: one batch of any structure (``(inputs, targets)``, a dict, ...)
            or a re-iterable of batches (a list, a DataLoader: the dataset-wide measure,
            streamed); default: the first training batch seen.
        mode: ``"train"`` (batch statistics, fixed dropout masks, as the net trains) or
            ``"eval"``.
        params: names of the parameters the measure is over (default: all).
        loss_fn: ``loss_fn(outputs, targets)`` (default cross-entropy) or
            ``loss_fn(model, batch)`` -> mean loss (`normtheory.batches`).
        every: the schedule (`Hook`); default: never during training (then use `at_end`).
        at_end: also measure at the ``end`` event.
        name: the metric prefix (default 'hessian_density').
    """

    default_name = "hessian_density"
    PREFIX = "hessian_density."
    NODE = "hessian_density.node"
    WEIGHT = "hessian_density.weight"
    N_HVP = "hessian_density.n_hvp"
    METRICS = (NODE, WEIGHT, N_HVP)

    def __init__(
        self,
        *,
        n_iter: int = 60,
        n_runs: int = 1,
        probe: object = None,
        mode: str = "train",
        params: Sequence[str] | None = None,
        loss_fn: Callable = F.cross_entropy,
        every: Every | None = None,
        at_end: bool = False,
        name: str | None = None,
    ):
        super().__init__(
            probe=probe, mode=mode, params=params, loss_fn=loss_fn, every=every, at_end=at_end,
            name=name,
        )  # fmt: skip
        self.n_iter, self.n_runs = n_iter, n_runs

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        res = hessian_density(
            ctx.model,
            self.loss_fn,
            self._data(ctx),
            n_iter=self.n_iter,
            n_runs=self.n_runs,
            **self._kw(),
        )
        rows = []
        for r in range(res.nodes.shape[0]):
            for i in range(res.nodes.shape[1]):
                rows += [
                    ("node", f"{r}:{i}", float(res.nodes[r, i])),
                    ("weight", f"{r}:{i}", float(res.weights[r, i])),
                ]
        return rows + [("n_hvp", "", res.n_hvp)]


class Smoothness(_CurvatureHook):
    """Santurkar et al.'s landscape measures along the gradient: loss range, gradient
    predictiveness (min/max) and effective β-smoothness, at step sizes lr·[0.5, 4].

    Args:
        lr: the training learning rate the step sizes are multiples of; default the loop's
            (``ctx.lr``: the optimizer given to the `Monitor`).
        multipliers: the (smallest, largest) multiple of `lr`; n_points: step sizes between.
        invariant: the same measures in the scale-invariant metric D = `invariant_metric`
            (coordinates D⁻¹ w).
        probe: the fixed data: one batch of any structure (``(inputs, targets)``, a dict, ...)
            or a re-iterable of batches (a list, a DataLoader: the dataset-wide measure,
            streamed); default: the first training batch seen.
        mode: ``"train"`` (batch statistics, fixed dropout masks, as the net trains) or
            ``"eval"``.
        params: names of the parameters the measure is over (default: all).
        loss_fn: ``loss_fn(outputs, targets)`` (default cross-entropy) or
            ``loss_fn(model, batch)`` -> mean loss (`normtheory.batches`).
        every: the schedule (`Hook`); default: never during training (then use `at_end`).
        at_end: also measure at the ``end`` event.
        name: the metric prefix (default 'smoothness').
    """

    default_name = "smoothness"
    PREFIX = "smoothness."
    LOSS_RANGE = "smoothness.loss_range"
    GRAD_PRED_MIN = "smoothness.grad_pred_min"
    GRAD_PRED_MAX = "smoothness.grad_pred_max"
    BETA = "smoothness.beta"
    GRAD_NORM = "smoothness.grad_norm"
    N_GRAD = "smoothness.n_grad"
    METRICS = (LOSS_RANGE, GRAD_PRED_MIN, GRAD_PRED_MAX, BETA, GRAD_NORM, N_GRAD)

    def __init__(
        self,
        *,
        lr: float | None = None,
        multipliers=(0.5, 4.0),
        n_points: int = 8,
        invariant: bool = False,
        probe: object = None,
        mode: str = "train",
        params: Sequence[str] | None = None,
        loss_fn: Callable = F.cross_entropy,
        every: Every | None = None,
        at_end: bool = False,
        name: str | None = None,
    ):
        super().__init__(
            probe=probe, mode=mode, params=params, loss_fn=loss_fn, every=every, at_end=at_end,
            name=name,
        )  # fmt: skip
        self.lr, self.multipliers, self.n_points = lr, tuple(multipliers), n_points
        self.invariant = invariant

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        lr = _lr(self, ctx)
        data = self._data(ctx)
        res = gradient_smoothness(
            ctx.model,
            self.loss_fn,
            data,
            lr=lr,
            multipliers=self.multipliers,
            n_points=self.n_points,
            metric=self._metric(ctx, data, self.invariant),
            **self._kw(),
        )
        return [
            ("loss_range", "", res.loss_range),
            ("grad_pred_min", "", res.grad_pred_min),
            ("grad_pred_max", "", res.grad_pred_max),
            ("beta", "", res.beta),
            ("grad_norm", "", res.grad_norm),
            ("n_grad", "", res.n_grad),
        ]


class OneStepLoss(_CurvatureHook):
    """Bjorck et al. 2018's test: relative loss change (L(w − ηg) − L(w)) / L(w) after one
    gradient step of size η on the probe batch, from the current weights (which are left as
    they are). Runs at the start of training by default. Metric: ``relative_change``.

    Args:
        lr: the step size η; default the loop's (``ctx.lr``: the optimizer given to the
            `Monitor`).
        at_start: measure at the ``start`` event (at initialization).
        probe: the fixed data: one batch of any structure (``(inputs, targets)``, a dict, ...)
            or a re-iterable of batches (a list, a DataLoader: the dataset-wide measure,
            streamed); default: the first training batch seen.
        mode: ``"train"`` (batch statistics, fixed dropout masks, as the net trains) or
            ``"eval"``.
        params: names of the parameters the measure is over (default: all).
        loss_fn: ``loss_fn(outputs, targets)`` (default cross-entropy) or
            ``loss_fn(model, batch)`` -> mean loss (`normtheory.batches`).
        every: the schedule (`Hook`); default: never during training (then use `at_end`).
        at_end: also measure at the ``end`` event.
        name: the metric prefix (default 'one_step').
    """

    default_name = "one_step"
    PREFIX = "one_step."
    RELATIVE_CHANGE = "one_step.relative_change"
    METRICS = (RELATIVE_CHANGE,)

    def __init__(
        self,
        *,
        lr: float | None = None,
        at_start: bool = True,
        probe: object = None,
        mode: str = "train",
        params: Sequence[str] | None = None,
        loss_fn: Callable = F.cross_entropy,
        every: Every | None = None,
        at_end: bool = False,
        name: str | None = None,
    ):
        super().__init__(
            probe=probe, mode=mode, params=params, loss_fn=loss_fn, every=every, at_end=at_end,
            name=name,
        )  # fmt: skip
        if at_start:
            self.events = (*self.events, "start")
        self.lr = lr

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        lr = _lr(self, ctx)
        res = gradient_smoothness(
            ctx.model,
            self.loss_fn,
            self._data(ctx),
            lr=lr,
            multipliers=(1.0, 1.0),
            n_points=1,
            **self._kw(),
        )
        return [("relative_change", "", (float(res.losses[0]) - res.loss) / res.loss)]
