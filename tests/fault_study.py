"""A tiny study for the sweep and fault tests: fast MLP cells on digits.

Profile ``quick``: four learning rates, two seeds, all fine. Profile ``faults``: one fine case,
one that diverges (no norm, huge learning rate) and one whose run function raises (``tag=boom``:
a config value the run function rejects), so a sweep sees every outcome.
"""

from normtheory.experiment import TrainCell, run_train_cell
from normtheory.hooks import GradNorm, LossAccuracy
from normtheory.study import Grid, Profile, Study

BASE = TrainCell(
    dataset="digits", arch="mlp", norm="batch", width=8, depth=1, steps=20, batch_size=16
)
FAULTS = (
    {"tag": "ok"},
    {"tag": "diverge", "norm": "none", "width": 64, "depth": 4, "lr": 20.0},
    {"tag": "boom"},
)


def run_cell(cell, seed, **kw):
    if cell.tag == "boom":
        raise RuntimeError(f"tag {cell.tag!r} asks this cell to fail")
    return run_train_cell(cell, seed, **kw)


STUDY = Study(
    name="fault_study",
    title="Tiny cells for the sweep tests",
    claims=(),
    profiles={
        "quick": Profile(Grid(BASE, {"lr": (0.01, 0.02, 0.05, 0.1)}), seeds=2),
        "faults": Profile(Grid(BASE, cases=FAULTS), seeds=1),
    },
    hooks=lambda cell: [LossAccuracy(every=5), GradNorm(every=5)],
    run_cell=run_cell,
)
