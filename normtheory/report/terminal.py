"""The claims table in the terminal (``normtheory verify``), from ``results/claims.csv``."""

from pathlib import Path

import pandas as pd
from rich.table import Table

STYLES = {
    "supported": "green",
    "refuted": "red",
    "inconclusive": "yellow",
    "exact-holds": "bold green",
    "exact-fails": "bold red",
    "not run": "dim",
}


def claims_table(claims: pd.DataFrame | str | Path) -> Table:
    """A rich `Table`: id, verdict, statistic, estimate [CI], seeds, profile, run — one row per
    verdict, coloured by verdict word (`claims` is the frame or the path of claims.csv)."""
    if not isinstance(claims, pd.DataFrame):
        claims = pd.read_csv(claims, keep_default_na=False)
    table = Table(title="normtheory: claims", show_lines=False, header_style="bold")
    for name, kw in (
        ("id", {"no_wrap": True}),
        ("verdict", {"no_wrap": True}),
        ("statistic", {}),
        ("estimate [95% CI]", {"no_wrap": True}),
        ("seeds", {"justify": "right"}),
        ("profile", {}),
        ("run", {}),
    ):
        table.add_column(name, **kw)
    for r in claims.itertuples():
        style = STYLES.get(r.verdict, "")
        table.add_row(
            r.claim,
            f"[{style}]{r.verdict}[/]" if style else r.verdict,
            str(r.statistic).replace("`", ""),
            str(r.estimate),
            str(r.seeds),
            str(r.profile),
            str(r.run),
        )
    return table
