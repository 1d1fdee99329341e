"""Training outcomes: loss and accuracy of a model on a dataset or a batch."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from normtheory.state import preserved


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of rows of `outputs` (N, K) whose argmax equals `targets` (N,)."""
    if outputs.ndim != 2 or targets.shape != outputs.shape[:1]:
        raise ValueError(
            f"accuracy needs outputs (N, K) and targets (N,), got {tuple(outputs.shape)} and {tuple(targets.shape)}"
        )
    return (outputs.argmax(dim=1) == targets).float().mean().item()


def evaluate(
    model: nn.Module,
    dataset: torch.utils.data.TensorDataset,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Mean loss and accuracy of `model` in eval mode over `dataset` (inputs, targets tensors).

    Runs without gradients; mode, buffers, ``.grad`` and RNG state are restored afterwards.
    Non-finite outputs give ``loss = nan`` rather than raising.

    Returns:
        ``{"loss": mean loss weighted by batch size, "acc": accuracy, "n": examples}``.
    """
    inputs, targets = dataset.tensors[0], dataset.tensors[1]
    if len(inputs) == 0:
        raise ValueError("evaluate got an empty dataset")
    device = next((p.device for p in model.parameters()), inputs.device)
    total_loss, correct = 0.0, 0
    with preserved(model), torch.no_grad():
        model.eval()
        for start in range(0, len(inputs), batch_size):
            x = inputs[start : start + batch_size].to(device)  # (B, *in_shape)
            y = targets[start : start + batch_size].to(device)  # (B,)
            out = model(x)  # (B, K)
            total_loss += loss_fn(out, y).item() * len(y)
            correct += (out.argmax(dim=1) == y).sum().item()
    return {"loss": total_loss / len(inputs), "acc": correct / len(inputs), "n": float(len(inputs))}
