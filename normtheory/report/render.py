"""Builds ``index.html`` (self-contained: inline CSS, figures as files next to it) and ``README.md``.

Reads only stored run folders: verdicts and figures are recomputed from the tidy tables by the
study's own functions, so a report regenerates without retraining.
"""

import html
import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from normtheory.claims import CLAIMS
from normtheory.report.figures import missing_figure
from normtheory.results import MANIFEST, ResultsError, git_commit, now
from normtheory.stats import Verdict, not_run
from normtheory.study import Results, load_study

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.92em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}.supported{background:#d9f2d9}.refuted{background:#f8d7d7}.inconclusive{background:#fdf3cf}
.exact-holds{background:#c6ecc6}.exact-fails{background:#f4bcbc}
.notrun{background:#eee;color:#777}.prov{color:#666;font-size:0.85em}img{max-width:100%;border:1px solid #ddd}
code{background:#f5f5f5;padding:1px 3px}
"""


@dataclass
class Section:
    """One run in the report: its study, verdicts, figures and metadata."""

    run: Path
    study_name: str
    title: str
    description: str
    manifest: dict
    verdicts: list[Verdict]
    figures: list[str] = field(default_factory=list)
    cells: pd.DataFrame | None = None
    error: str = ""


def find_runs(root: str | Path = "runs") -> list[Path]:
    """Run folders (those holding a manifest) under `root`, sorted."""
    root = Path(root)
    if (root / MANIFEST).exists():
        return [root]
    return sorted(p.parent for p in root.glob(f"*/{MANIFEST}"))


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def _section(run: Path, out: Path, figures_only: bool) -> Section:
    results = Results.load(run)
    manifest = results.manifest
    study = load_study(manifest.get("study_path") or manifest["study"])
    sec = Section(
        run,
        study.name,
        study.title,
        study.description.split("\n\n")[0],
        manifest,
        [],
        cells=results.cells,
    )
    if not figures_only:
        try:
            sec.verdicts = list(study.verdicts(results))
        except Exception as err:  # a broken verdict must not hide the others
            sec.error = f"verdicts failed: {type(err).__name__}: {err}"
            traceback.print_exc()
        done = {v.claim for v in sec.verdicts}
        sec.verdicts += [
            not_run(c, "no verdict from stored results") for c in study.claims if c not in done
        ]
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for name, fn in study.figures.items():
        try:
            fig = fn(results)
        except Exception as err:
            fig = missing_figure(name, [f"{type(err).__name__}: {err}"])
        stem = f"{run.name}-{name}"
        # No date metadata and a fixed SVG id salt: unchanged figures regenerate byte-identical.
        fig.savefig(
            png := out / "figures" / f"{stem}.png",
            dpi=110,
            bbox_inches="tight",
            metadata={"Software": None},
        )
        fig.savefig(
            png.with_suffix(".svg"), bbox_inches="tight", metadata={"Date": None, "Creator": None}
        )
        plt.close(fig)
        sec.figures.append(stem)
    (out / "results").mkdir(parents=True, exist_ok=True)
    results.cells.to_csv(out / "results" / f"{run.name}-cells.csv", index=False)
    return sec


def _verdict_rows(sections: list[Section]) -> list[dict]:
    rows = []
    for sec in sections:
        for v in sec.verdicts:
            claim = CLAIMS.get(v.claim)
            rows.append(
                {
                    "claim": v.claim,
                    "source": claim.source if claim else "?",
                    "statement": claim.statement if claim else "",
                    "verdict": v.verdict,
                    "statistic": v.statistic,
                    "estimate": f"{_fmt(v.estimate)} [{_fmt(v.ci_low)}, {_fmt(v.ci_high)}]",
                    "seeds": v.n_seeds,
                    "profile": sec.manifest.get("profile", "?"),
                    "run": sec.run.name,
                    "figure": sec.figures[0] if sec.figures else "",
                    "detail": v.detail,
                }
            )
    return rows


def _meta(sec: Section) -> dict:
    m, cells = sec.manifest, sec.cells
    wall = (
        float(cells["wall_time"].fillna(0).sum())
        if cells is not None and "wall_time" in cells
        else math.nan
    )
    counts = cells["status"].value_counts().to_dict() if cells is not None and len(cells) else {}
    return {
        "commit": m.get("git_commit", "?"),
        "torch": m.get("versions", {}).get("torch", "?"),
        "device": m.get("device", "?"),
        "profile": m.get("profile", "?"),
        "cells": ", ".join(f"{v} {k}" for k, v in counts.items()) or "none",
        "training wall time": f"{wall:.1f} s",
        "started": m.get("started_at", "?"),
        "finished": m.get("finished_at", "not finished"),
    }


def build_report(
    run_dirs: list[str | Path],
    out: str | Path = "reports",
    *,
    command: str = "",
    figures_only: bool = False,
) -> Path:
    """Writes the report for `run_dirs` into `out`; returns the path of index.html."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ResultsError(f"report output {out} is a file, not a folder")
    runs = [Path(r) for r in run_dirs]
    if not runs:
        raise ResultsError(
            "no run folders to report on; run a study first (normtheory run batch_size --profile quick)"
        )
    # Provenance first: writing the (tracked) figures below would make the tree look dirty.
    provenance = (
        f"Generated by `{command or 'normtheory report'}` at commit {git_commit()} on {now()}."
    )
    sections = [_section(run, out, figures_only) for run in runs]
    if figures_only:
        return out / "index.html"
    rows = _verdict_rows(sections)
    (out / "index.html").write_text(_html(sections, rows, provenance))
    (out / "README.md").write_text(_markdown(sections, rows, provenance))
    pd.DataFrame(rows).to_csv(out / "results" / "claims.csv", index=False)
    return out / "index.html"


def _html(sections: list[Section], rows: list[dict], provenance: str) -> str:
    e = html.escape
    head = [
        "claim",
        "source",
        "statement",
        "verdict",
        "statistic",
        "estimate [95% CI]",
        "seeds",
        "profile",
        "figure",
    ]
    body = []
    for r in rows:
        cls = r["verdict"].replace(" ", "")
        fig = f'<a href="#{e(r["run"])}">{e(r["figure"])}</a>' if r["figure"] else ""
        cells = [
            r["claim"],
            r["source"],
            r["statement"],
            r["verdict"],
            r["statistic"],
            r["estimate"],
            str(r["seeds"]),
            r["profile"],
        ]
        body.append(
            "<tr>"
            + "".join(
                f'<td class="{cls}">{e(c)}</td>' if i == 3 else f"<td>{e(c)}</td>"
                for i, c in enumerate(cells)
            )
            + f"<td>{fig}</td></tr>"
        )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>normtheory report</title><style>{_CSS}</style></head><body>",
        f"<p class='prov'>{e(provenance)}</p><h1>normtheory report</h1><h2>Claims</h2>",
        "<table><tr>"
        + "".join(f"<th>{e(h)}</th>" for h in head)
        + "</tr>"
        + "".join(body)
        + "</table>",
    ]
    for sec in sections:
        parts.append(
            f"<h2 id='{e(sec.run.name)}'>{e(sec.study_name)}: {e(sec.title)}</h2><p>{e(sec.description)}</p>"
        )
        if sec.error:
            parts.append(f"<p class='refuted'>{e(sec.error)}</p>")
        for v in sec.verdicts:
            if v.detail:
                parts.append(f"<p><b>{e(v.claim)}</b> ({e(v.verdict)}): {e(v.detail)}</p>")
        parts += [
            f"<figure><img src='figures/{e(f)}.png' alt='{e(f)}'><figcaption>{e(f)}</figcaption></figure>"
            for f in sec.figures
        ]
        parts.append(
            "<table>"
            + "".join(
                f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in _meta(sec).items()
            )
            + "</table>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown(sections: list[Section], rows: list[dict], provenance: str) -> str:
    lines = [
        f"<!-- {provenance} -->",
        f"_{provenance}_",
        "",
        "# normtheory report",
        "",
        "## Claims",
        "",
        "| claim | source | statement | verdict | statistic | estimate [95% CI] | seeds | profile |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['claim']} | {r['source']} | {r['statement']} | **{r['verdict']}** | {r['statistic']} | {r['estimate']} | {r['seeds']} | {r['profile']} |"
        for r in rows
    ]
    for sec in sections:
        lines += ["", f"## {sec.study_name}: {sec.title}", "", sec.description, ""]
        if sec.error:
            lines += [f"> {sec.error}", ""]
        lines += [f"- **{v.claim}** ({v.verdict}): {v.detail}" for v in sec.verdicts if v.detail]
        lines += [
            "",
            *[f"![{f}](figures/{f}.png)" for f in sec.figures],
            "",
            "| run metadata | |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v} |" for k, v in _meta(sec).items()]
    return "\n".join(lines) + "\n"
