"""``normtheory run --until-decided``: seeds are added to the same run folder (stored cells
reused, not a different config) until the claims are decided, and the tests are corrected for
the planned number of looks."""

import json

import pandas as pd
import pytest

from normtheory.cli import main
from normtheory.sequential import planned_looks

STUDY = """
import pandas as pd
from normtheory.experiment import TrainCell
from normtheory.study import Grid, Profile, Study
from normtheory.evidence import CheckValue, sample

BASE = TrainCell(dataset="gaussian_mixture", arch="mlp", width=4, depth=1, steps=3, batch_size=16)


def statistics(results):
    seeds = sorted(results.cells["seed"].unique())
    return [
        sample("GN-BATCH", "bn_rise", pd.Series({s: 0.1 + 0.001 * s for s in seeds})),
        sample("GN-BATCH", "gn_rise", pd.Series({s: 0.001 * (s % 2) for s in seeds})),
        CheckValue("GN-BATCH", "bn_trained", 0.9),
        CheckValue("GN-BATCH", "bn_penalty", 0.1),
    ]


STUDY = Study(
    name="seq", title="seq", claims=("GN-BATCH",),
    profiles={"quick": Profile(Grid(BASE, {"norm": ("batch",)}), seeds=3)},
    statistics=statistics,
)
"""

pytestmark = pytest.mark.usefixtures("one_thread")


def test_planned_looks():
    assert planned_looks(3, 7, 2) == 3 and planned_looks(5, 20, 2) == 9
    assert planned_looks(5, 5, 2) == 1 and planned_looks(5, 6, 4) == 2


def test_until_decided_adds_seeds_and_reuses_cells(tmp_path, capsys):
    path = tmp_path / "seq.py"
    path.write_text(STUDY)
    out = tmp_path / "run"
    base = ["run", str(path), "--device", "cpu", "--out", str(out)]
    assert main(base) == 0  # 3 seeds: GN-BATCH is underpowered (n = 3 < 5)
    first = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert len(first) == 3
    assert main([*base, "--until-decided", "--max-seeds", "7"]) == 0
    printed = capsys.readouterr().out
    assert "3 seeds after 1 look(s) of 3 planned" in printed
    assert "5 seeds after 2 look(s) of 3 planned (each at α/3): GN-BATCH supported" in printed
    cells = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert len(cells) == 5 and all(cells[k] == v for k, v in first.items())  # reused
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["seeds"] == 5
    assert manifest["sequential"] == {"looks_planned": 3, "looks": 2, "step": 2, "max_seeds": 7}
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    claims = pd.read_csv(tmp_path / "rep" / "results" / "claims.csv", keep_default_na=False)
    row = claims.set_index("claim").loc["GN-BATCH"]
    assert row["verdict"] == "supported" and "α = 0.05/3" in row["reason"]


def test_until_decided_refuses_a_cap_below_the_start(tmp_path, capsys):
    path = tmp_path / "seq.py"
    path.write_text(STUDY)
    argv = ["run", str(path), "--until-decided", "--max-seeds", "2", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "--max-seeds 2 is below the starting 3 seeds" in capsys.readouterr().err
