"""`normtheory.report.terminal`: the claims table ``normtheory verify`` prints has one row per
claim of ``claims.csv`` in its order, each verdict in its colour, the primary statistic (or, for a
claim without one, the reason), and reads the frame or the CSV file alike."""

import io

import pandas as pd
import pytest
from rich.console import Console
from rich.text import Text

from normtheory.report.tables import LEGEND, claim_rows
from normtheory.report.terminal import STYLES, claims_table

VERDICTS = list(LEGEND)  # every verdict word the report uses


def _claims(n: int) -> pd.DataFrame:
    verdicts = [VERDICTS[i % len(VERDICTS)] for i in range(n)]
    return pd.DataFrame({
        "claim": [f"C-{i}" for i in range(n)], "verdict": verdicts,
        "label": [v + (" (underpowered)" if v == "inconclusive" else "") for v in verdicts],
        "statistic": ["" if v == "not run" else f"stat {i}" for i, v in enumerate(verdicts)],
        "estimate": [f"{i}.5 [0, {i + 1}]" for i in range(n)],
        "reason": ["not run: `normtheory run x`"] * n, "seeds": range(n), "profile": "quick",
    })  # fmt: skip


def _column(table, name: str) -> list:
    (column,) = [c for c in table.columns if c.header == name]
    return list(column.cells)


def _plain(cell) -> str:
    return Text.from_markup(cell).plain


@pytest.mark.parametrize("n", [0, 1, 7, 23])
def test_one_row_per_claim_in_order(n):
    claims = _claims(n)
    table = claims_table(claims)
    assert table.row_count == n
    assert _column(table, "id") == list(claims["claim"])
    assert [_plain(c) for c in _column(table, "verdict")] == list(claims["label"])
    assert _column(table, "seeds") == [str(s) for s in range(n)]


def test_each_verdict_has_its_colour():
    claims = _claims(len(VERDICTS))
    cells = _column(claims_table(claims), "verdict")
    assert set(STYLES) == set(VERDICTS)  # every verdict word has a colour
    for verdict, cell in zip(claims["verdict"], cells):
        assert Text.from_markup(cell).spans[0].style == STYLES[verdict], verdict
    assert len({STYLES[v] for v in VERDICTS}) == len(VERDICTS)  # no two alike


def test_an_unknown_verdict_is_shown_plain():
    claims = _claims(1).assign(verdict="pending", label="pending")
    (cell,) = _column(claims_table(claims), "verdict")
    assert cell == "pending"


def test_statistic_or_reason():
    claims = _claims(len(VERDICTS))
    stats = _column(claims_table(claims), "primary statistic: estimate [95% CI]")
    for row, cell in zip(claims.itertuples(), stats):
        expected = (
            f"{row.statistic}: {row.estimate}" if row.statistic else "not run: normtheory run x"
        )
        assert cell == expected  # backticks dropped: the terminal shows no code spans


def test_the_csv_file_and_the_frame_give_the_same_table(tmp_path):
    rows = pd.DataFrame(claim_rows([], {}))  # every claim of the registry, as the report writes
    rows.to_csv(tmp_path / "claims.csv", index=False)
    texts = []
    for source in (rows, tmp_path / "claims.csv", str(tmp_path / "claims.csv")):
        out = io.StringIO()
        Console(file=out, width=160, color_system=None).print(claims_table(source))
        texts.append(out.getvalue())
    assert texts[0] == texts[1] == texts[2]
    assert all(claim in texts[0] for claim in rows["claim"])


@pytest.mark.parametrize("width", [80, 120])
def test_the_table_fits_the_terminal(width):
    rows = pd.DataFrame(claim_rows([], {}))
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(claims_table(rows))
    assert max(len(line) for line in out.getvalue().splitlines()) <= width


def test_the_profile_column_names_the_tier_of_each_verdict():
    claims = _claims(2).assign(profile=["full", "standard"], tier=["quick", "standard"])
    assert _column(claims_table(claims), "profile (tier)") == [
        "full (quick)",
        "standard (standard)",
    ]
