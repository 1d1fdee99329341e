"""Training outcomes: loss and accuracy of a model on a dataset or a batch."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from normtheory.norms import BatchNorm
from normtheory.state import preserved


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of rows of `outputs` (N, K) whose argmax equals `targets` (N,)."""
    if outputs.ndim != 2 or targets.shape != outputs.shape[:1]:
        raise ValueError(
            f"accuracy needs outputs (N, K) and targets (N,), got {tuple(outputs.shape)} and {tuple(targets.shape)}"
        )
    return (outputs.argmax(dim=1) == targets).float().mean().item()


def check_eval_data(data) -> None:
    """Raises TypeError naming the accepted kinds unless `data` is one `evaluate` takes."""
    pair = isinstance(data, (tuple, list)) and len(data) == 2 and all(map(torch.is_tensor, data))
    if pair or hasattr(data, "tensors") or isinstance(data, torch.utils.data.DataLoader):
        return
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        return
    raise TypeError(
        "evaluation data must be (inputs, targets) tensors, a TensorDataset, a Dataset of "
        f"(x, y) pairs or a DataLoader; got {type(data).__name__}"
    )


def _batches(data, batch_size: int):
    """(inputs, targets) batches of `data` (see `check_eval_data`); a map-style Dataset is
    batched by a plain DataLoader in order."""
    if isinstance(data, (tuple, list)) or hasattr(data, "tensors"):
        inputs, targets = data if isinstance(data, (tuple, list)) else data.tensors[:2]
        for start in range(0, len(inputs), batch_size):
            yield inputs[start : start + batch_size], targets[start : start + batch_size]
        return
    if not isinstance(data, torch.utils.data.DataLoader):
        data = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    for batch in data:
        yield batch[0], batch[1]


def evaluate(
    model: nn.Module,
    dataset,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Mean loss and accuracy of `model` in eval mode over `dataset`: a tuple (inputs, targets)
    of tensors, a `TensorDataset`, a Dataset of (x, y) pairs or a DataLoader.

    Runs without gradients; mode, buffers, ``.grad`` and RNG state are restored afterwards (a
    DataLoader's own seed draw included). Non-finite outputs give ``loss = nan`` rather than
    raising.

    Returns:
        ``{"loss": mean loss weighted by batch size, "acc": accuracy, "n": examples}``.
    """
    check_eval_data(dataset)
    batches = _batches(dataset, batch_size)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    total_loss, correct, n = 0.0, 0, 0
    with preserved(model), torch.no_grad():
        model.eval()
        for x, y in batches:
            x, y = x.to(device), y.to(device)  # (B, *in_shape), (B,)
            out = model(x)  # (B, K)
            total_loss += loss_fn(out, y).item() * len(y)
            correct += (out.argmax(dim=1) == y).sum().item()
            n += len(y)
    if n == 0:
        raise ValueError("evaluate got an empty dataset")
    return {"loss": total_loss / n, "acc": correct / n, "n": float(n)}


@contextmanager
def example_weighing(model: nn.Module, weight: float) -> Iterator[nn.Module]:
    """Evaluates `model` with inference example weighing w (Summers & Dinneen 2019) in every
    `normtheory.norms.BatchNorm` (Ghost BN included), then restores each layer's own w.

    In eval mode each example is normalized with μ = (1 − w) μ_pop + w μ_i and the matching
    mixture variance, μ_i its own statistics over space: w = 0 is standard eval-mode BN, w = 1
    instance-norm-style statistics; w ≈ 1/B mimics a training batch of B examples. Training mode
    is unaffected. No retraining: the switch only changes how the stored statistics are used.

    Raises:
        ValueError: `weight` outside [0, 1], or the model has no BatchNorm with running
            statistics.
    """
    if not (isinstance(weight, int | float) and 0.0 <= weight <= 1.0):
        raise ValueError(f"example weight must be a float in [0, 1], got {weight!r}")
    layers = [m for m in model.modules() if isinstance(m, BatchNorm) and m.track_running_stats]
    if not layers:
        raise ValueError(
            "example_weighing needs normtheory.norms.BatchNorm layers with running statistics; "
            "the model has none"
        )
    saved = [m.example_weight for m in layers]
    try:
        for m in layers:
            m.example_weight = float(weight)
        yield model
    finally:
        for m, w in zip(layers, saved):
            m.example_weight = w


def train_eval_discrepancy(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> dict[str, float]:
    """How differently a batch is treated in training and in inference mode.

    Runs the batch once in eval mode (the population statistics as they were before the call,
    with whatever example weighing is set) and once in train mode (batch statistics), without
    gradients; everything (modes, running statistics, RNG) is restored afterwards.

    Returns:
        ``{"train_loss", "eval_loss", "loss_gap": eval − train, "output_gap": ‖f_train(x) −
        f_eval(x)‖_F / ‖f_eval(x)‖_F}``, f_eval with the running statistics from before the
        call.
    """
    with preserved(model), torch.no_grad():
        # The train-mode pass updates the running statistics in place, so the eval pass runs
        # first, on the statistics from before the call; preserved() undoes the update.
        model.eval()
        out_eval = model(inputs)  # (B, K)
        model.train()
        out_train = model(inputs)  # (B, K)
    train_loss, eval_loss = loss_fn(out_train, targets).item(), loss_fn(out_eval, targets).item()
    return {
        "train_loss": train_loss,
        "eval_loss": eval_loss,
        "loss_gap": eval_loss - train_loss,
        "output_gap": float((out_train - out_eval).norm() / out_eval.norm().clamp_min(1e-30)),
    }
