"""The shape of a recorded training curve: how jittery a loss is late in training, and when it
first reaches a target."""

import numpy as np
import pandas as pd


def loss_jitter(steps, losses, *, start: float = 0.5) -> float:
    """Jitter of a loss curve: the spread of its relative changes between records, late in training.

        J = sd( log L_{k+1} − log L_k ),  over consecutive records k, k+1 with step ≥ start · T

    with T the last recorded step and sd the sample standard deviation (ddof = 1). Changes of
    log L are relative changes, so J does not grow with the level of the loss (a curve that is
    twice as high everywhere has the same J) and a smooth decay with a constant rate has J = 0;
    a single spike of height h (one record × e^h) among n changes gives J = h √(2 / (n − 1)).
    Records must be on a regular schedule for changes to be comparable.

    Args:
        steps: the record steps, increasing (e.g. every 5 steps).
        losses: the loss at each step.
        start: the window starts at this fraction of the last step (0.5: the last half).

    Returns:
        J, or NaN with fewer than three records in the window or a non-finite or non-positive
        loss in it (a diverged run has no jitter to compare).
    """
    steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
    if steps.shape != losses.shape or steps.ndim != 1:
        raise ValueError(
            f"steps and losses must be 1-D of one length, got {steps.shape}, {losses.shape}"
        )
    if np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be increasing")
    window = losses[steps >= start * steps[-1]] if len(steps) else losses
    if len(window) < 3 or not np.all(np.isfinite(window)) or np.any(window <= 0):
        return float("nan")
    return float(np.std(np.diff(np.log(window)), ddof=1))


def steps_to_target(steps, losses, target: float, *, window: int = 5) -> float:
    """The first step at which a loss curve, smoothed, is below `target`.

        t* = min { s_k : (1/|W_k|) Σ_{j ∈ W_k} L_j < target },  W_k = {max(0, k − window + 1), …, k}

    the trailing mean over the last `window` records (fewer at the start of the curve), taken
    in step order.

    Args:
        steps: the record steps (any order; one record per step).
        losses: the loss at each step.
        target: the loss level to reach.
        window: records in the trailing mean.

    Returns:
        t* as a float, or NaN when the smoothed curve never goes below `target`.
    """
    curve = pd.DataFrame({"step": steps, "loss": losses}).sort_values("step")
    hit = curve["step"][curve["loss"].rolling(window, min_periods=1).mean() < target]
    return float(hit.iloc[0]) if len(hit) else np.nan
