"""Both sides of an exact identity and whether they agree: `IdentityCheck` and the comparison
the identity checks of `normtheory.measure.identities` share."""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Loss = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class IdentityCheck:
    """Both sides of one exact identity and whether they agree.

    Attributes:
        claim: claim id, e.g. ``"BN-GRAD"``; a variant the tests expect to fail says so.
        lhs: left-hand side (for per-channel identities: of the worst channel).
        rhs: right-hand side, same channel.
        rel_error: |lhs - rhs| / max(|lhs|, |rhs|, largest term), so cancellation between the
            terms of a side cannot inflate it; for vector identities the relative error of the
            whole vector (see `check_si_orth`).
        holds: ``rel_error <= tol`` (False for NaN).
        detail: which channel or which half of the claim.
    """

    claim: str
    lhs: float
    rhs: float
    rel_error: float
    holds: bool
    detail: str = ""


def _rel_error(lhs: Tensor, rhs: Tensor, scale: Tensor) -> Tensor:
    denom = torch.maximum(torch.maximum(lhs.abs(), rhs.abs()), scale.abs())
    err = (lhs - rhs).abs()
    # denom == 0 forces lhs == rhs == 0, hence err == 0
    return torch.where(err == 0, torch.zeros_like(err), err / denom)


def worst_channel(claim: str, lhs: Tensor, rhs: Tensor, scale: Tensor, tol: float) -> IdentityCheck:
    """The check of the channel with the largest relative error (NaN counts as the largest).

    The error of channel j is |lhs_j - rhs_j| / max(|lhs_j|, |rhs_j|, |scale_j|), 0 when the
    sides are equal; `scale` is the largest term of a side, so cancellation cannot inflate it.
    """
    rel = _rel_error(lhs, rhs, scale)  # (C,)
    j = int(torch.nan_to_num(rel, nan=math.inf).argmax())
    err = float(rel[j])
    detail = f"worst channel {j} of {len(rel)}"
    return IdentityCheck(claim, float(lhs[j]), float(rhs[j]), err, err <= tol, detail)


def scalar_loss(loss: Tensor) -> Tensor:
    """`loss` as a 0-d tensor; a loss callable that returns anything else is a ValueError."""
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError(f"the loss callable must return a scalar tensor, got {loss!r}")
    return loss.reshape(())
