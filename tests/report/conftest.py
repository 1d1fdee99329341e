"""Tiny run folders for the report tests: a user study of a few training steps (with a figure
drawn by the shared helpers and stand-in values of GN-BATCH's registered statistics and checks),
a copy with missing cells, a study whose statistics function raises, and the exact checks of
``exact_checks`` study."""

import shutil

import pytest

from normtheory.cli import main

STUDY = '''
"""A tiny study for the report tests: BN vs no norm on a Gaussian mixture."""
from normtheory.experiment import TrainCell
from normtheory.plots import over_steps
from normtheory.study import Grid, Profile, Study
from normtheory.evidence import CheckValue, sample

BASE = TrainCell(dataset="gaussian_mixture", arch="mlp", width=8, depth=1, steps=10, batch_size=16)


def statistics(results):
    {body}
    # Stand-ins under GN-BATCH's registered names, one value per seed (the run's test error);
    # check values that pass, so that the claim gets a decided row ("inconclusive", 2 seeds).
    err = 1 - results.cells.groupby("seed")["final_test_acc"].mean()
    return [
        sample("GN-BATCH", "bn_rise", err),
        sample("GN-BATCH", "gn_rise", err - 0.5),
        CheckValue("GN-BATCH", "bn_trained", 0.9),
        CheckValue("GN-BATCH", "bn_penalty", err.mean()),
    ]


STUDY = Study(
    name="{name}", title="tiny {name}", claims=("GN-BATCH", "BN-LR"),
    profiles={{"quick": Profile(Grid(BASE, {{"norm": ("batch", "none")}}), seeds=2)}},
    statistics=statistics,
    figures={{"loss": lambda r: over_steps(r.records, {{"outcome.train_loss": "train loss"}},
                                            title="BN-LR: loss")}},
)
'''


@pytest.fixture(scope="session")
def report_runs(tmp_path_factory):
    """{name: run folder}: ``tiny``, ``partial`` (2 of 4 cells removed), ``broken`` (statistics
    raise) and ``exact`` (the exact_checks study, 2 seeds)."""
    root = tmp_path_factory.mktemp("report_runs")
    runs = {}
    for name, body in (("tiny", "pass"), ("broken", "raise RuntimeError('boom')")):
        path = root / f"{name}.py"
        path.write_text(STUDY.format(name=name, body=body))
        out = root / "runs" / name
        assert main(["run", str(path), "--device", "cpu", "--out", str(out)]) == 0
        runs[name] = out
    partial = root / "runs" / "partial"
    shutil.copytree(runs["tiny"], partial)
    for record in sorted((partial / "cells").glob("*.json"))[:2]:
        record.unlink()
    runs["partial"] = partial
    runs["exact"] = root / "runs" / "exact"
    argv = ["run", "exact_checks", "--device", "cpu", "--seeds", "2", "--out", str(runs["exact"])]
    assert main(argv) == 0
    return runs
