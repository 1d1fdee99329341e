"""Synthetic study data shared by the studies' known-answer tests."""

import numpy as np


def error_cells(errors: dict, seeds: int = 5, noise: float = 0.004) -> list[dict]:
    """Synthetic completed cells: per (norm, batch_size) -> mean test error, `seeds` seeds each,
    the accuracy 1 − error − N(0, noise) from a fixed generator (for known-answer tests)."""
    rng = np.random.default_rng(0)
    return [
        {
            "norm": n,
            "batch_size": b,
            "seed": s,
            "status": "completed",
            "final_test_acc": 1 - e - rng.normal(0, noise),
        }  # fmt: skip
        for (n, b), e in errors.items()
        for s in range(seeds)
    ]
