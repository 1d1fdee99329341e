"""The one explicit training loop. It fires events to hooks through a `Context`; hooks never own it.

Events, in order: ``start`` → per step ``after_backward``, ``after_step`` (and ``eval`` every
`eval_every` steps) → ``eval`` at the end → ``end``. With ``config.rescale`` the loop applies
weight rescaling right after each optimizer step, before the ``after_step`` event. A
non-finite training loss stops the run and is recorded as ``status="diverged"`` at that step:
divergence is an outcome, not an error.
"""

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from normtheory.hooks.base import Context, Hook, Monitor
from normtheory.measure.outcomes import evaluate
from normtheory.optim import NormDecay, WeightRescaling, build_param_groups

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step")


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
        schedule: ``constant``, ``cosine`` (to 0 at the last step) or ``step`` (×0.1 at 50 % and 75 %).
        eval_every: evaluate on the test set every this many steps (0: only at the end).
        seed: seeds the global torch RNG (dropout) and the data order.
        device: ``auto``, ``cpu`` or ``cuda``.
        rescale: weight rescaling (WRS, `normtheory.optim.WeightRescaling`): after every step,
            each output channel of every per-channel scale-invariant weight is set to unit norm,
            and those weights get no weight decay.
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
        for name in ("weight_decay", "momentum", "eval_every", "gamma_decay", "beta_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


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

    Args:
        model: any module mapping inputs to logits.
        train_set, test_set: TensorDatasets of (inputs, targets); kept on the device.
        config: optimization settings.
        hooks: measurement hooks called at the loop's events.
        loss_fn: mean loss of (outputs, targets).
        progress: a ``rich.progress.Progress`` to show a bar in, or None.
    """
    _check_data("train_set", train_set)
    if test_set is not None:
        _check_data("test_set", test_set)
    device = resolve_device(config.device)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device).train()
    x_all, y_all = (t.to(device) for t in train_set.tensors[:2])  # (N, *in_shape), (N,)
    test = None
    if test_set is not None:
        test = torch.utils.data.TensorDataset(*(t.to(device) for t in test_set.tensors[:2]))
    rescaler = build_rescaler(model, config)
    optimizer = build_optimizer(model, config, rescaler)
    norm_decay = NormDecay(model, gamma=config.gamma_decay, beta=config.beta_decay)
    monitor = Monitor(model, hooks)
    ctx = Context(
        model=model, optimizer=optimizer, loss_fn=loss_fn, lr=config.lr, total_steps=config.steps
    )
    if rescaler is not None:
        ctx.extras["rescaled"] = tuple(rescaler.names)
    monitor.fire("start", ctx)
    task = progress.add_task("steps", total=config.steps) if progress is not None else None

    def run_eval(step: int) -> dict[str, float]:
        if test is None:
            return {}
        result = evaluate(model, test, loss_fn=loss_fn)
        ctx.step, ctx.metrics = step, {"test_loss": result["loss"], "test_acc": result["acc"]}
        monitor.fire("eval", ctx)
        return ctx.metrics

    status, diverged_at, step, last_loss = "completed", None, 0, math.nan
    batches = _batches(len(x_all), config.batch_size, generator)
    for step in range(config.steps):
        idx = next(batches).to(device)
        x, y = x_all[idx], y_all[idx]
        lr = lr_at(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        outputs = model(x)
        loss = loss_fn(outputs, y)
        last_loss = loss.item()
        if not math.isfinite(last_loss):
            status, diverged_at = "diverged", step
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ctx.step, ctx.inputs, ctx.targets, ctx.outputs, ctx.loss, ctx.lr = (
            step,
            x,
            y,
            outputs,
            loss.detach(),
            lr,
        )
        monitor.fire("after_backward", ctx)
        norm_decay.apply()  # hooks saw the loss gradient alone
        optimizer.step()
        if rescaler is not None:
            rescaler.after_step()
        monitor.fire("after_step", ctx)
        if config.eval_every and (step + 1) % config.eval_every == 0 and step + 1 < config.steps:
            run_eval(step + 1)
        if task is not None:
            progress.update(task, advance=1, description=f"loss {last_loss:.3g}")
    steps_done = step + 1 if status == "completed" else step
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
    )
