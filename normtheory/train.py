"""The one explicit training loop. It fires events to hooks through a `Context`; hooks never own it.

Events, in order: ``start`` → per step ``after_backward``, ``after_step`` (and ``eval`` every
`eval_every` steps) → ``eval`` at the end → ``end``. With ``config.rescale`` the loop applies
weight rescaling right after each optimizer step, before the ``after_step`` event. A
non-finite training loss stops the run and is recorded as ``status="diverged"`` at that step:
divergence is an outcome, not an error. The loss is read from the device only at sync steps
(see `train`), with the same outcome as reading it every step. Options: mixed precision of the
forward pass (``amp``, `normtheory.amp`) and image augmentation (``augment``,
`normtheory.augment`); the result carries the loop's steps per second.
"""

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from normtheory.amp import AMP_MODES, amp_mode, autocast, build_scaler, check_amp
from normtheory.augment import AUGMENTS, check_augment, crop_flip, draw_crop_flip, pad_for
from normtheory.hooks.base import Context, Hook, Monitor
from normtheory.measure.outcomes import evaluate
from normtheory.optim import AdaptiveGradClipping, NormDecay, WeightRescaling, build_param_groups
from normtheory.preconditioning import BNPreconditioner
from normtheory.snapshot import Snapshot

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step", "warmup_cosine")
WARMUP = 0.05  # share of the steps `warmup_cosine` warms up over
_PER_STEP = ("after_backward", "after_step")
_CUDA_SYNC_EVERY = 50  # steps between loss reads on a GPU (a diverging run replays up to this)
_FLUSH_EVERY = 100  # steps between conversions of the lazy hooks' device records
_AUGMENT_SEED = 7919  # offset of the augmentation stream's seed from the run's seed


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when present, else CPU; ``"cuda"`` without a GPU raises."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} asked for, but CUDA is not available here; use --device cpu or auto"
        )
    return torch.device(device)


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings of one run.

    Attributes:
        optimizer: ``sgd`` (with `momentum`) or ``adam``.
        lr: learning rate (peak, before the schedule).
        momentum: SGD momentum (Adam's β₁ stays at its default).
        weight_decay: coupled L2 decay applied by the optimizer to every parameter except the
            normalization layers' γ and β (and FRN's τ) and the rescaled weights (`rescale`).
        gamma_decay, beta_decay: decay of the norms' γ toward 1 and β toward 0 (`NormDecay`;
            0 = none, the default, as in most codebases).
        batch_size: examples per step.
        steps: optimizer steps.
        schedule: ``constant``, ``cosine`` (to 0 at the last step), ``step`` (×0.1 at 50 % and
            75 %) or ``warmup_cosine`` (linear warm-up from lr/w to lr over the first w = 5 % of
            the steps, then cosine to 0; the GN paper's warm-up for linearly scaled rates).
        eval_every: evaluate on the test set every this many steps (0: only at the end).
        seed: seeds the global torch RNG (dropout) and the data order.
        device: ``auto``, ``cpu`` or ``cuda``.
        rescale: weight rescaling (WRS, `normtheory.optim.WeightRescaling`): after every step,
            each output channel of every per-channel scale-invariant weight is set to unit norm,
            and those weights get no weight decay.
        augment: ``none``, ``crop`` or ``crop_flip`` (image inputs only: random crop of the zero-padded
            image, padded by 1/8 of its height (`normtheory.augment.pad_for`: 4 of 32), and a
            (``crop_flip``) a random horizontal flip per example, on the device; drawn from a generator seeded by
            `seed`, apart from the data order's).
        amp: mixed precision of the training forward, ``off``, ``bf16`` or ``fp16``
            (`normtheory.amp`); None: the one in force (`normtheory.amp.use_amp`, the CLI's
            ``--amp``), else off.
        sync_every: read the training loss (divergence check) every this many steps at least;
            0: every step on CPU, every 50 on CUDA (see `train`).
        agc: adaptive gradient clipping threshold λ (`normtheory.optim.AdaptiveGradClipping`,
            Brock et al. 2021; the head unclipped, ε = 10⁻³), applied after the hooks saw the
            loss gradient and before the optimizer step (after BNP's preconditioning when both
            are on: it clips the direction the step takes); 0: off.
        bn_precondition: Batch Normalization Preconditioning (BNP,
            `normtheory.preconditioning.BNPreconditioner`, every Linear/Conv layer): each
            training forward updates the running statistics of the layers' inputs, and the
            loss gradient is preconditioned with them after the hooks' ``after_backward``, before
            the norms' decay and the optimizer step.
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 32
    steps: int = 100
    schedule: str = "constant"
    eval_every: int = 0
    seed: int = 0
    device: str = "auto"
    rescale: bool = False
    gamma_decay: float = 0.0
    beta_decay: float = 0.0
    augment: str = "none"
    amp: str | None = None
    sync_every: int = 0
    agc: float = 0.0
    bn_precondition: bool = False

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        for name in ("batch_size", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        for name in (
            "weight_decay",
            "momentum",
            "eval_every",
            "gamma_decay",
            "beta_decay",
            "sync_every",
            "agc",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"unknown augment {self.augment!r}; valid: {', '.join(AUGMENTS)}")
        if self.amp is not None and self.amp not in AMP_MODES:
            raise ValueError(f"unknown amp {self.amp!r}; valid: {', '.join(AMP_MODES)}")


@dataclass
class TrainResult:
    """What a run produced: its status, final metrics and the hooks' records."""

    status: str  # "completed" | "diverged"
    steps_done: int
    diverged_at: int | None
    final: dict[str, float]
    records: pd.DataFrame
    wall_time: float
    device: str
    extras: dict = field(default_factory=dict)
    steps_per_s: float = math.nan  # optimizer steps per second of the step loop (hooks included)
    loop_cpu_s: float = math.nan  # CPU seconds of this process (all threads) in the step loop


def build_optimizer(
    model: nn.Module, config: TrainConfig, rescaler: WeightRescaling | None = None
) -> torch.optim.Optimizer:
    """The optimizer named by `config` over all trainable parameters. ``weight_decay`` goes to
    every parameter but the norms' affine parameters (their decay is `NormDecay`'s) and the
    weights of a `rescaler`."""
    exclude = [*NormDecay(model).names, *(rescaler.names if rescaler is not None else [])]
    params = build_param_groups(model, config.weight_decay, exclude=exclude)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def build_rescaler(model: nn.Module, config: TrainConfig) -> WeightRescaling | None:
    """The `WeightRescaling` of the model's per-channel scale-invariant weights when
    ``config.rescale``, else None. Raises if the model has no such weight."""
    if not config.rescale:
        return None
    rescaler = WeightRescaling(model)
    if not rescaler.names:
        raise ValueError(
            "rescale=True, but the model has no per-channel scale-invariant weight (a conv or "
            "linear weight feeding a batch-statistics norm); use a norm such as batch"
        )
    return rescaler


def lr_at(config: TrainConfig, step: int) -> float:
    """Learning rate for optimizer step `step` (0-based) under the configured schedule."""
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * step / config.steps))
    if config.schedule == "warmup_cosine":  # Goyal et al. 2017 / Wu & He 2018: linear warm-up
        warm = max(1, round(WARMUP * config.steps))
        if step < warm:
            return config.lr * (step + 1) / warm
        return config.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / (config.steps - warm)))
    if config.schedule == "step":
        return config.lr * 0.1 ** ((step >= config.steps // 2) + (step >= 3 * config.steps // 4))
    return config.lr


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterable[torch.Tensor]:
    """Endless stream of index batches: a fresh permutation per epoch, remainder dropped."""
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the training set ({n} examples)")
    while True:
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield perm[start : start + batch_size]


def _check_data(name: str, data: torch.utils.data.TensorDataset) -> None:
    """Refuses an empty dataset or non-finite inputs: bad data, not a diverging run."""
    if not isinstance(data, torch.utils.data.TensorDataset) or len(data.tensors) < 2:
        raise TypeError(f"{name} must be a TensorDataset of (inputs, targets), got {data!r}")
    inputs = data.tensors[0]
    if len(inputs) == 0:
        raise ValueError(f"{name} is empty (0 examples)")
    if inputs.is_floating_point():
        bad = int((~torch.isfinite(inputs)).sum())
        if bad:
            raise ValueError(
                f"{name} inputs hold {bad} non-finite values (NaN/inf); clean the data first"
            )


def train(
    model: nn.Module,
    train_set: torch.utils.data.TensorDataset,
    test_set: torch.utils.data.TensorDataset | None = None,
    config: TrainConfig = TrainConfig(),
    hooks: Iterable[Hook] = (),
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    progress=None,
) -> TrainResult:
    """Trains `model` in place and returns the outcome and the hooks' records.

    Divergence is checked without a device→host read per step: each step's loss stays on the
    device and is read at *sync steps* only (every ``config.sync_every`` steps, each step where
    a hook is scheduled or an evaluation follows, and the last step). Before a stretch of
    unchecked steps the loop takes a `normtheory.snapshot.Snapshot`; a non-finite loss found in
    the stretch restores it and replays the stretch checked step by step. So the outcome is the
    one of checking every step, as before: the run stops at the first non-finite loss, after its
    forward pass (BN statistics included) and before its backward pass, with ``diverged_at``
    that step; the returned model was never updated from a non-finite loss, and no hook sees
    that step or a later one. What changes: the progress bar shows the loss of the last sync
    step, and a diverging run replays up to ``sync_every`` steps. On CPU a read costs nothing,
    so every step is a sync step there unless ``sync_every`` says otherwise.

    Args:
        model: any module mapping inputs to logits.
        train_set, test_set: TensorDatasets of (inputs, targets); kept on the device.
        config: optimization settings.
        hooks: measurement hooks called at the loop's events (never under autocast).
        loss_fn: mean loss of (outputs, targets).
        progress: a ``rich.progress.Progress`` to show a bar in, or None.
    """
    _check_data("train_set", train_set)
    if test_set is not None:
        _check_data("test_set", test_set)
    device = resolve_device(config.device)
    amp = config.amp if config.amp is not None else amp_mode()
    check_amp(amp, device)
    check_augment(config.augment, tuple(train_set.tensors[0].shape[1:]))
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    augment = None  # its own stream, so the data order is the same with and without it
    if config.augment != "none":
        augment = torch.Generator().manual_seed(config.seed + _AUGMENT_SEED)
    model.to(device).train()
    x_all, y_all = (t.to(device) for t in train_set.tensors[:2])  # (N, *in_shape), (N,)
    test = None
    if test_set is not None:
        test = torch.utils.data.TensorDataset(*(t.to(device) for t in test_set.tensors[:2]))
    rescaler = build_rescaler(model, config)
    precond = BNPreconditioner(model) if config.bn_precondition else None
    optimizer = build_optimizer(model, config, rescaler)
    norm_decay = NormDecay(model, gamma=config.gamma_decay, beta=config.beta_decay)
    clipper = AdaptiveGradClipping(model, config.agc) if config.agc else None
    scaler = build_scaler(amp, device)
    monitor = Monitor(model, hooks, flush_every=_FLUSH_EVERY)
    ctx = Context(
        model=model, optimizer=optimizer, loss_fn=loss_fn, lr=config.lr, total_steps=config.steps
    )
    if rescaler is not None:
        ctx.extras["rescaled"] = tuple(rescaler.names)
    monitor.fire("start", ctx)
    task = progress.add_task("steps", total=config.steps) if progress is not None else None
    sync_every = config.sync_every or (1 if device.type == "cpu" else _CUDA_SYNC_EVERY)

    def run_eval(step: int) -> dict[str, float]:
        if test is None:
            return {}
        result = evaluate(model, test, loss_fn=loss_fn)
        ctx.step, ctx.metrics = step, {"test_loss": result["loss"], "test_acc": result["acc"]}
        monitor.fire("eval", ctx)
        return ctx.metrics

    def evaluates_after(step: int) -> bool:
        return bool(config.eval_every) and (step + 1) % config.eval_every == 0

    def is_sync(step: int) -> bool:
        return (
            (step + 1) % sync_every == 0
            or step + 1 == config.steps
            or evaluates_after(step)
            or any(h.scheduled(e, step, config.steps) for h in monitor.hooks for e in _PER_STEP)
        )

    def forward(step: int, idx: torch.Tensor):
        x, y = x_all[idx], y_all[idx]
        if augment is not None:
            pad = pad_for(x.shape[-2])
            offsets, flips = draw_crop_flip(len(idx), augment, pad)
            flips = flips if config.augment == "crop_flip" else torch.zeros_like(flips)
            x = crop_flip(x, offsets, flips, pad)
        lr = lr_at(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        observe = precond.observe() if precond is not None else contextlib.nullcontext()
        with autocast(amp, device), observe:
            outputs = model(x)
            loss = loss_fn(outputs, y)
        return x, y, outputs, loss, lr

    def update(step: int, x, y, outputs, loss, lr) -> None:
        optimizer.zero_grad(set_to_none=True)
        (loss if scaler is None else scaler.scale(loss)).backward()
        if scaler is not None:
            scaler.unscale_(optimizer)  # hooks and NormDecay see the true gradients
        ctx.step, ctx.inputs, ctx.targets, ctx.lr = step, x, y, lr
        ctx.outputs = outputs if amp == "off" else outputs.float()
        ctx.loss = loss.detach()
        monitor.fire("after_backward", ctx)
        if precond is not None:
            precond.precondition()
        if clipper is not None:
            clipper.apply()
        norm_decay.apply()  # hooks saw the loss gradient alone
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        if rescaler is not None:
            rescaler.after_step()
        monitor.fire("after_step", ctx)
        if evaluates_after(step) and step + 1 < config.steps:
            run_eval(step + 1)

    def snapshot() -> Snapshot:
        gens = [augment] if augment is not None else []
        states = [precond] if precond is not None else []
        return Snapshot.take(model, optimizer, scaler, gens, device, states)

    def replay(saved: Snapshot, window: list, bad: int) -> tuple[int, float]:
        """Back to the start of the unchecked stretch `window`, then its steps up to the
        forward pass of its first non-finite one, `bad`; returns that step and its loss."""
        saved.restore(model, optimizer, scaler, device)
        for step, idx, _ in window[:bad]:
            update(step, *forward(step, idx))
        step, idx, _ = window[bad]
        return step, forward(step, idx)[3].item()

    status, diverged_at, step, last_loss = "completed", None, 0, math.nan
    batches = _batches(len(x_all), config.batch_size, generator)
    window, saved = [], None  # the unchecked steps since the last sync: (step, idx, loss)
    loop_started, loop_cpu = time.perf_counter(), time.process_time()
    for step in range(config.steps):
        idx = next(batches).to(device)
        sync = is_sync(step)
        if not sync and not window:
            saved = snapshot()
        x, y, outputs, loss, lr = forward(step, idx)
        if not sync:
            window.append((step, idx, loss.detach()))
        else:
            if window:
                values = torch.stack([w[2] for w in window] + [loss.detach()]).tolist()
            else:
                values = [loss.item()]
            bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
            if bad is not None and bad < len(window):
                step, last_loss = replay(saved, window, bad)
            elif bad is not None:
                last_loss = values[-1]
            if bad is not None:
                status, diverged_at = "diverged", step
                break
            window, last_loss = [], values[-1]
        update(step, x, y, outputs, loss, lr)
        if task is not None:
            shown = {"description": f"loss {last_loss:.3g}"} if sync else {}
            progress.update(task, advance=1, **shown)
    steps_done = step + 1 if status == "completed" else step
    loop_time = time.perf_counter() - loop_started
    loop_cpu = time.process_time() - loop_cpu
    final = {"train_loss": last_loss, "n_params": float(sum(p.numel() for p in model.parameters()))}
    if status == "completed":
        final.update(run_eval(steps_done))
    ctx.step, ctx.extras = steps_done, {**ctx.extras, "status": status}
    monitor.fire("end", ctx)
    if task is not None:
        progress.remove_task(task)
    return TrainResult(
        status=status,
        steps_done=steps_done,
        diverged_at=diverged_at,
        final=final,
        records=monitor.frame(),
        wall_time=time.perf_counter() - started,
        device=str(device),
        steps_per_s=steps_done / loop_time if loop_time > 0 else math.nan,
        loop_cpu_s=loop_cpu,
    )
