"""Mixed precision: the training forward pass under `torch.autocast`, off by default.

``bf16`` runs the forward (and loss) in bfloat16 where autocast does, on CUDA or CPU; ``fp16``
runs it in float16 with a `torch.amp.GradScaler` and needs CUDA (float16 autocast on CPU is
slow and half supported, and its loss scaling is a GPU recipe). Only the forward and loss of
the training step run under autocast: parameters, gradients and optimizer state stay float32,
and hooks, evaluation and every measurement run outside it, in float32/float64.

The setting of a run is ``TrainConfig.amp``, or (when that is None) the innermost `use_amp`,
which is how the CLI's ``--amp`` reaches every cell without being part of a cell.
"""

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch

AMP_MODES = ("off", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_AMP: ContextVar[str] = ContextVar("normtheory_amp", default="off")


@contextlib.contextmanager
def use_amp(mode: str) -> Iterator[None]:
    """Sets the mixed-precision mode of the runs started inside (see `amp_mode`)."""
    check_amp(mode)
    token = _AMP.set(mode)
    try:
        yield
    finally:
        _AMP.reset(token)


def amp_mode() -> str:
    """The mode in force: the innermost `use_amp`, else ``"off"``."""
    return _AMP.get()


def check_amp(mode: str, device: torch.device | str | None = None) -> None:
    """Raises ValueError (one line) for an unknown mode, or ``fp16`` on a device without CUDA."""
    if mode not in AMP_MODES:
        raise ValueError(f"unknown amp {mode!r}; valid: {', '.join(AMP_MODES)}")
    if device is not None and mode == "fp16" and torch.device(device).type != "cuda":
        raise ValueError(
            f"amp fp16 needs a CUDA device, not {str(device)!r}; use --amp bf16 or off on CPU"
        )


def autocast(mode: str, device: torch.device):
    """The autocast context of the training forward (a no-op context when `mode` is off)."""
    if mode == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[mode])


def build_scaler(mode: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler for ``fp16`` (the loss is scaled so small float16 gradients survive)."""
    return torch.amp.GradScaler(device.type) if mode == "fp16" else None
