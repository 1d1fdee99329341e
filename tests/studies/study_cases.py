"""Synthetic study data shared by the studies' known-answer tests."""

import numpy as np

# A batch_size grid small enough for a smoke run (seconds), with every norm its claims compare
# and the batch sizes they name (1 for WS-MICRO, 2 for GN-BATCH and FRN-BATCH): one epoch of
# 64 training examples.
BATCH_SIZE_TINY = [
    "norm=batch,group,group+ws,frn,batch_group",
    "batch_size=1,2,16",
    "epochs=1",
    "max_train=64",
    "width=4",
    "depth=2",
    "groups=2",
]


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
