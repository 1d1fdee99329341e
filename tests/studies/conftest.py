"""The smoke-run helper of the study tests: run a study through the CLI on a tiny grid, build its
report, and read back its claims and figures."""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from normtheory.cli import main


@dataclass
class StudyCLI:
    root: Path

    def run(self, study: str, *overrides: str, seeds: str = "2") -> tuple[Path, pd.DataFrame]:
        """`normtheory run STUDY` into root/run, then `normtheory report` into root/rep; returns
        the run folder and the claims rows of this run (the table also lists untested claims)."""
        out = self.root / "run"
        argv = ["run", study, "--seeds", seeds, "--device", "cpu", "--out", str(out), *overrides]
        assert main(argv) == 0
        assert main(["report", str(out), "--out", str(self.root / "rep")]) == 0
        claims = pd.read_csv(self.root / "rep" / "results" / "claims.csv")
        return out, claims[claims["run"] == "run"]

    def figures(self, names) -> None:
        """Each named figure of the run was drawn (a PNG of real content, not a stub)."""
        for name in names:
            png = self.root / "rep" / "figures" / f"run-{name}.png"
            assert png.exists() and png.stat().st_size > 10_000, name


@pytest.fixture
def study_cli(tmp_path) -> StudyCLI:
    return StudyCLI(tmp_path)
