"""The smoke-run helper of the study tests: run a study through the CLI on a tiny grid, build its
report, and read back its statistic rows, its claim-level verdicts and its figures."""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from normtheory.claims import CLAIMS
from normtheory.cli import main
from normtheory.registry import load_study


def own_name(study: str) -> str:
    return load_study(study).name


@dataclass
class StudyCLI:
    root: Path

    def run(self, study: str, *overrides: str, seeds: str = "2") -> tuple[Path, pd.DataFrame]:
        """`normtheory run STUDY` into root/run, then `normtheory report` into root/rep; returns
        the run folder and the statistic rows of this run (``results/rows.csv``: claim, name,
        condition, primary, verdict, note, statistic, estimate, ci_low, ci_high, n_seeds, ...).

        Fails when the study's statistics raise or leave one of its own claims "not run": a
        smoke run must exercise every claim the study declares."""
        out = self.root / "run"
        argv = ["run", study, "--seeds", seeds, "--device", "cpu", "--out", str(out), *overrides]
        assert main(argv) == 0
        assert main(["report", str(out), "--out", str(self.root / "rep")]) == 0
        rows = pd.read_csv(
            self.root / "rep" / "results" / "rows.csv",
            keep_default_na=False,
            na_values={c: ["nan", "NaN", ""] for c in ("estimate", "ci_low", "ci_high")},
            dtype={"condition": str, "name": str},
        )
        rows = rows[rows["run"] == "run"]
        claims = self.claims()
        own = claims[claims["claim"].isin(load_study(study).claims)]
        # An exact claim decided by another study (``exact_checks``) stays "not run" at
        # claim level from this run alone; it must still get its rows from this run.
        elsewhere = own["claim"].map(
            lambda c: CLAIMS[c].kind == "exact" and CLAIMS[c].study != own_name(study)
        )
        broken = own[
            (own["verdict"] == "not run") & ~(elsewhere & own["claim"].isin(rows["claim"]))
        ]
        assert broken.empty, (
            f"claims left not run by their own smoke run:\n{broken[['claim', 'reason']]}"
        )
        return out, rows

    def claims(self) -> pd.DataFrame:
        """The report's claim-level table (``results/claims.csv``, one row per claim)."""
        return pd.read_csv(self.root / "rep" / "results" / "claims.csv", keep_default_na=False)

    def figures(self, names, absent=()) -> None:
        """Each named figure of the run was drawn (a PNG of real content, not a stub), and each
        of `absent` (figures that do not apply to the run) was not."""
        for name in names:
            png = self.root / "rep" / "figures" / f"run-{name}.png"
            assert png.exists() and png.stat().st_size > 10_000, name
        for name in absent:
            assert not (self.root / "rep" / "figures" / f"run-{name}.png").exists(), name


@pytest.fixture
def study_cli(tmp_path) -> StudyCLI:
    return StudyCLI(tmp_path)
