"""The claims table in the terminal (``normtheory verify``), from ``results/claims.csv``: one row
per claim, the statistic column wrapping so the table fits the terminal."""

from pathlib import Path

import pandas as pd
from rich.table import Table

STYLES = {
    "supported": "green",
    "refuted": "red",
    "inconclusive": "yellow",
    "not testable at this scale": "magenta",
    "exact-holds": "bold green",
    "exact-fails": "bold red",
    "not run": "dim",
}


def claims_table(claims: pd.DataFrame | str | Path) -> Table:
    """A rich `Table`: id, verdict, primary statistic with its CI, seeds, profile and its tier — one row per
    claim, coloured by verdict (`claims` is the frame or the path of claims.csv)."""
    if not isinstance(claims, pd.DataFrame):
        claims = pd.read_csv(claims, keep_default_na=False)
    table = Table(title="normtheory: claims", show_lines=False, header_style="bold")
    table.add_column("id", no_wrap=True)
    table.add_column("verdict", max_width=28)
    table.add_column("primary statistic: estimate [95% CI]", ratio=1, overflow="fold")
    table.add_column("seeds", justify="right")
    table.add_column("profile (tier)")
    for r in claims.itertuples():
        style = STYLES.get(r.verdict, "")
        label = str(r.label)
        stat = f"{r.statistic}: {r.estimate}" if r.statistic else str(r.reason).replace("`", "")
        table.add_row(
            r.claim,
            f"[{style}]{label}[/]" if style else label,
            stat,
            str(r.seeds),
            f"{r.profile} ({getattr(r, 'tier', '?')})",
        )
    return table
