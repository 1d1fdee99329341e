"""The report's tables: one row per claim verdict (every claim of the catalogue, "not run" where
no stored run tested it), the legend of the verdict words, and each run's metadata."""

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from normtheory.claims import CLAIMS
from normtheory.stats import EXACT, Verdict

NOT_RUN = "not run"
LEGEND = {
    "supported": "the statistic's 95% CI over seeds lies on the side the claim predicts (or, for "
    "a claimed value, within the claimed value ± its margin)",
    "refuted": "the CI lies entirely on the other side (or entirely outside the margin)",
    "inconclusive": "the CI includes 0 (or straddles the margin); more seeds or a larger scale "
    "may decide it",
    "exact-holds": "an identity, checked to floating-point precision (or, for IC-CORR/IC-MI, to "
    "4 standard errors of its sampled estimate): the measured error is within the tolerance",
    "exact-fails": "the identity's measured error exceeds the tolerance",
    NOT_RUN: "no stored result tests the claim (the row names the command that would), or the "
    "run's results were missing or its verdict function failed",
}


@dataclass
class Section:
    """One run in the report: its study, verdicts, figures and metadata.

    Attributes:
        figures: figure stems (``<run>-<name>``), drawn as ``figures/<stem>.png``.
        figure_texts: stem -> the figure's titles, to link a claim to the figure naming it.
        figure_data: stems whose data table was written to ``results/<stem>.csv``.
        expected, complete: cells × seeds of the run's grid, and those stored complete.
        measured: the generated sentence saying what was measured.
    """

    run: Path
    study_name: str
    title: str
    description: str
    manifest: dict
    verdicts: list[Verdict]
    figures: list[str] = field(default_factory=list)
    figure_texts: dict[str, str] = field(default_factory=dict)
    figure_data: set[str] = field(default_factory=set)
    cells: pd.DataFrame | None = None
    error: str = ""
    expected: int = 0
    complete: int = 0
    measured: str = ""

    @property
    def partial(self) -> bool:
        return self.complete < self.expected

    @property
    def anchor(self) -> str:
        return f"run-{self.run.name}"


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}g}"


def estimate_text(v: Verdict) -> str:
    """``est [low, high]``; exact verdicts and rows without an interval show the value only."""
    if v.verdict == NOT_RUN:
        return "–"
    if v.verdict in EXACT or not (math.isfinite(v.ci_low) and math.isfinite(v.ci_high)):
        return fmt(v.estimate)
    return f"{fmt(v.estimate)} [{fmt(v.ci_low)}, {fmt(v.ci_high)}]"


def _figure_for(claim: str, sec: Section) -> str:
    named = [f for f in sec.figures if claim in sec.figure_texts.get(f, "")]
    return (named or sec.figures or [""])[0]


def verdict_rows(sections: list[Section], testers: dict[str, list[str]]) -> list[dict]:
    """One row per verdict of every section, plus a "not run" row for every claim of the
    catalogue that no section has a row for, naming what would test it (`testers`: claim ->
    commands). Rows follow the catalogue's order (claims of a topic together)."""
    rows = []
    for sec in sections:
        note = f" (partial: {sec.complete} of {sec.expected} cells)" if sec.partial else ""
        for v in sec.verdicts:
            claim = CLAIMS.get(v.claim)
            rows.append(
                {
                    "claim": v.claim,
                    "source": claim.source if claim else "?",
                    "statement": claim.statement if claim else "",
                    "verdict": v.verdict,
                    "statistic": v.statistic + (note if v.verdict != NOT_RUN else ""),
                    "estimate": estimate_text(v),
                    "value": v.estimate,
                    "ci_low": v.ci_low,
                    "ci_high": v.ci_high,
                    "seeds": v.n_seeds,
                    "profile": sec.manifest.get("profile", "?"),
                    "run": sec.run.name,
                    "figure": _figure_for(v.claim, sec),
                    "detail": v.detail,
                }
            )
    covered = {r["claim"] for r in rows}
    for cid, claim in CLAIMS.items():
        if cid in covered:
            continue
        how = " or ".join(f"`{c}`" for c in testers.get(cid, [])) or "no study tests it yet"
        rows.append(
            {
                "claim": cid,
                "source": claim.source,
                "statement": claim.statement,
                "verdict": NOT_RUN,
                "statistic": f"not run: {how}",
                "estimate": "–",
                "value": math.nan,
                "ci_low": math.nan,
                "ci_high": math.nan,
                "seeds": 0,
                "profile": "–",
                "run": "",
                "figure": "",
                "detail": "",
            }
        )
    order = {cid: i for i, cid in enumerate(CLAIMS)}
    return sorted(rows, key=lambda r: order.get(r["claim"], len(order)))  # stable


def meta(sec: Section) -> dict:
    """The run metadata shown under each section."""
    m, cells = sec.manifest, sec.cells
    versions = m.get("versions", {})
    if cells is not None and "wall_time" in cells:
        wall = float(pd.to_numeric(cells["wall_time"], errors="coerce").fillna(0).sum())
    else:
        wall = float(m.get("wall_time", math.nan) or math.nan)
    counts = cells["status"].value_counts().to_dict() if cells is not None and len(cells) else {}
    out = {
        "commit": m.get("git_commit", "?"),
        "python": versions.get("python", "?"),
        "torch": versions.get("torch", "?"),
        "device": m.get("device", "?"),
        "profile": m.get("profile", "?"),
    }
    if cells is not None:
        out["cells × seeds"] = f"{sec.complete} of {sec.expected} complete" + (
            f" ({', '.join(f'{v} {k}' for k, v in counts.items())})" if counts else ""
        )
    out["wall time"] = f"{wall:.1f} s" + (" (training)" if cells is not None else "")
    out["started"] = m.get("started_at", "–")
    out["finished"] = m.get("finished_at", "not finished")
    out["command"] = m.get("command") or "–"
    return out
