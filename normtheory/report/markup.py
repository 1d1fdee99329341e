"""The report's two pages from the same content: ``index.html`` (self-contained: inline CSS, no
scripts, no external fetches; figures as files next to it) and ``README.md`` (renders on a code
host). Both open with the provenance line and the claims table."""

import html
import re
from collections import Counter

from normtheory.analysis import FINAL_METRIC_POLICY
from normtheory.report.tables import LEGEND, NOT_RUN, Section, estimate_text, fmt, meta

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1320px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:1em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}
table.claims{width:100%}table.claims td:first-child,td.num{white-space:nowrap}
table.claims td:nth-child(2),table.claims td:nth-child(3){min-width:12em}
table.claims td:nth-child(5){min-width:13em;max-width:22em}table.claims td:nth-child(6){min-width:16em}
.supported{background:#d9f2d9}.refuted{background:#f8d7d7}.inconclusive{background:#fdf3cf}
.exact-holds{background:#c6ecc6}.exact-fails{background:#f4bcbc}
.notrun{background:#eee;color:#666}tr.notrun td{color:#777}
td.verdict{font-weight:600}table.stats td.verdict{white-space:nowrap}
.reason,.test{font-weight:400}
.prov{color:#666;font-size:.85em}.measured{color:#444;font-size:.92em}
.error{background:#f8d7d7;padding:.4em .6em;border-left:4px solid crimson}
figure{margin:1.2em 0}img{max-width:100%;border:1px solid #ddd}
figcaption{color:#555;font-size:.85em}code{background:#f5f5f5;padding:1px 3px}
dl.legend{display:grid;grid-template-columns:max-content auto;gap:.25em 1em;font-size:.9em}
dl.legend dt{padding:0 .4em;font-weight:600}dl.legend dd{margin:0}
table.stats{font-size:.84em}table.stats td.num{white-space:nowrap}
.nottestableatthisscale{background:#e3e3f7}.power{color:#555;font-size:.9em}
.reason{color:#444;font-size:.9em}.test{color:#777;font-size:.82em}
"""

HEAD = ["id", "claim", "source's setting and number", "this run's scale", "verdict",
        "primary statistic [95% CI]", "effect: paper vs here", "figure"]  # fmt: skip
STAT_HEAD = [
    "claim",
    "statistic",
    "estimate [95% CI]",
    "n",
    "p (Holm)",
    "verdict",
    "power / detail",
]
INTRO = (
    "Which claims of the normalization literature hold at this scale: one row per claim of "
    "`CLAIMS.md`, with the verdict of its pre-registered test (`normtheory/claims.toml`), the "
    "statistic it turned on, the source's setting and number next to this run's scale. Each "
    "run's section below has every statistic row, the manipulation checks and the figures. "
    + FINAL_METRIC_POLICY
)


def _e(text) -> str:
    """HTML-escaped text with `code` spans (commands) as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text)))


def _cls(verdict: str) -> str:
    return verdict.replace(" ", "")


def summary_line(rows: list[dict]) -> str:
    """E.g. ``23 claims: 10 supported, 2 refuted, ...`` (one verdict per claim)."""
    counts = Counter(r["verdict"] for r in rows)
    words = ", ".join(f"{counts[w]} {w}" for w in LEGEND if counts[w])
    return f"{len(rows)} claims: {words}."


def _commits(sections: list[Section]) -> str:
    """Which commits the runs were made at; warns when they differ or one is dirty."""
    by_commit: dict[str, list[str]] = {}
    for s in sections:
        by_commit.setdefault(str(s.manifest.get("git_commit", "?")), []).append(s.run.name)
    commits = sorted(by_commit)
    dirty = [c for c in commits if c.endswith("+dirty")]
    if len(commits) > 1:  # which run came from which commit
        listed = ", ".join(f"{c} ({', '.join(sorted(by_commit[c]))})" for c in commits)
    else:
        listed = ", ".join(commits)
    text = f"Runs made at commit{'s' if len(commits) > 1 else ''} {listed}."
    if len(commits) > 1 or dirty:
        text += " Not a clean reference: the runs come from more than one commit or a dirty tree."
    return text


def _fig_link(r: dict) -> str:
    if not r["figure"]:
        return ""
    name = r["figure"].removeprefix(f"{r['run']}-")
    return f'<a href="#fig-{html.escape(r["figure"])}">{html.escape(name)}</a>'


def _tier(r: dict) -> str:
    """`` (tier X)`` for a claim row that a run decided, else nothing."""
    tier = r.get("tier", "–")
    return f" (tier {tier})" if tier not in ("–", "", None) else ""


def _claim_row_html(r: dict) -> str:
    e = html.escape
    verdict = e(r["label"])
    stat = (
        f"{_e(r['statistic'])}<br><b>{e(r['estimate'])}</b>"
        + (f"<div class='power'>{e(r['power'])}</div>" if r["power"] else "")
        if r["statistic"]
        else ""
    )
    return (
        f'<tr class="{"notrun" if r["verdict"] == NOT_RUN else ""}" data-claim="{e(r["claim"])}">'
        f"<td>{e(r['claim'])}</td>"
        f"<td>{e(r['statement'])}<div class='test' title='{e(r['source'])}'>"
        f"{e(r['source'].split(',')[0])}</div></td>"
        f"<td>{e(r['setting'])}<div class='reason'>{e(r['paper'])}</div></td>"
        f"<td>{e(r['scale'])}<div class='test'>{e(r['profile'])}{e(_tier(r))} · {e(r['run'])}</div></td>"
        f'<td class="verdict {_cls(r["verdict"])}">{verdict}'
        f"<div class='reason'>{_e(r['reason'])}</div><div class='test'>{e(r['test'])}</div></td>"
        f"<td>{stat}</td><td class='num'>{e(r['effect'])}</td><td>{_fig_link(r)}</td></tr>"
    )


def _stat_rows_html(sec: Section) -> str:
    e = html.escape
    body = []
    for cv in sec.claim_verdicts.values():
        for v in cv.rows:
            role = "" if v.primary else " (secondary)"
            extra = v.power or v.detail
            p = fmt(v.p_adjusted) if v.primary else fmt(v.p_value)
            body.append(
                f"<tr><td>{e(v.claim)}</td><td>{e(v.statistic)}{e(role)}</td>"
                f"<td class='num'>{e(estimate_text(v))}</td><td>{v.n_seeds}</td><td>{e(p)}</td>"
                f'<td class="verdict {_cls(v.verdict)}">{e(v.label)}</td>'
                f"<td class='power'>{e(extra)}</td></tr>"
            )
        for check, value, ok in cv.checks:
            body.append(
                f"<tr><td>{e(cv.claim)}</td><td>check: {e(check.text)}</td>"
                f"<td class='num'>{e(fmt(value))} (needs {e(check.op)} {check.threshold:g})</td>"
                f"<td></td><td></td><td class='verdict {'supported' if ok else 'refuted'}'>"
                f"{'passes' if ok else 'fails'}</td><td></td></tr>"
            )
    if not body:
        return ""
    head = "".join(f"<th>{e(h)}</th>" for h in STAT_HEAD)
    return f"<table class='stats'><tr>{head}</tr>{''.join(body)}</table>"


def html_page(sections: list[Section], rows: list[dict], provenance: str) -> str:
    e = html.escape
    legend = "".join(
        f'<dt class="{_cls(w)}">{e(w)}</dt><dd>{e(text)}</dd>' for w, text in LEGEND.items()
    )
    toc = "".join(
        f'<li><a href="#{e(s.anchor)}">{e(s.study_name)}</a> (run <code>{e(s.run.name)}</code>): '
        f"{e(s.title)}</li>"
        for s in sections
    )
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>normtheory report</title><style>{_CSS}</style></head><body>",
        f"<p class='prov'>{_e(provenance)} {e(_commits(sections))}</p><h1>normtheory report</h1>",
        f"<p>{_e(INTRO)} {e(summary_line(rows))}</p>",
        "<h2 id='claims'>Claims</h2><table class='claims'><tr>"
        + "".join(f"<th>{e(h)}</th>" for h in HEAD)
        + "</tr>"
        + "".join(_claim_row_html(r) for r in rows)
        + "</table>",
        f"<h3>Verdicts</h3><dl class='legend'>{legend}</dl>",
        f"<h3>Runs</h3><ul>{toc}</ul>",
    ]
    for sec in sections:
        parts.append(
            f"<section id='{e(sec.anchor)}'><h2>{e(sec.study_name)}: {e(sec.title)}</h2>"
            f"<p class='prov'>run folder <code>{e(sec.run.name)}</code></p>"
            f"<p>{_e(sec.description)}</p><p class='measured'>{_e(sec.measured)}</p>"
        )
        if sec.error:
            parts.append(f"<p class='error'>{e(sec.error)}</p>")
        parts.append(
            "<ul class='reason'>"
            + "".join(
                f"<li><b>{e(c)}</b> from this run: <span class='{_cls(cv.verdict)}'>"
                f"{e(cv.label)}</span> — {_e(cv.reason)}</li>"
                for c, cv in sec.claim_verdicts.items()
            )
            + "</ul>"
            + _stat_rows_html(sec)
        )
        for f in sec.figures:
            data = f" · <a href='results/{e(f)}.csv'>data (CSV)</a>" if f in sec.figure_data else ""
            parts.append(
                f"<figure id='fig-{e(f)}'><img src='figures/{e(f)}.png' alt='figure {e(f)}'>"
                f"<figcaption>{e(f)} — <a href='figures/{e(f)}.svg'>SVG</a>{data}</figcaption>"
                "</figure>"
            )
        parts.append(
            "<table class='meta'>"
            + "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in meta(sec).items())
            + "</table></section>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _md(text) -> str:
    """A Markdown table cell: pipes escaped, no line breaks."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_page(sections: list[Section], rows: list[dict], provenance: str) -> str:
    lines = [
        f"<!-- {provenance} -->",
        f"_{provenance} {_commits(sections)}_",
        "",
        "# normtheory report",
        "",
        f"{INTRO} {summary_line(rows)}",
        "",
        "## Claims",
        "",
        "| " + " | ".join(HEAD) + " |",
        "|" + "---|" * len(HEAD),
    ]
    for r in rows:
        fig = (
            f"[{r['figure'].removeprefix(r['run'] + '-')}](figures/{r['figure']}.png)"
            if r["figure"]
            else ""
        )
        stat = f"{r['statistic']}: **{r['estimate']}**" + (f" ({r['power']})" if r["power"] else "")
        cells = [
            r["claim"],
            f"{r['statement']} ({r['source'].split(',')[0]})",
            f"{r['setting']}; {r['paper']}",
            f"{r['scale']} ({r['profile']}{_tier(r).replace(' (', ', ').rstrip(')')})",
            f"**{r['label']}**: {r['reason']} ({r['test']})",
            stat if r["statistic"] else "",
            r["effect"],
            fig,
        ]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    lines += ["", "Verdicts:", ""]
    lines += [f"- **{w}**: {text}" for w, text in LEGEND.items()]
    for sec in sections:
        lines += ["", f"## {sec.study_name}: {sec.title}", "", sec.description, "", sec.measured]
        if sec.error:
            lines += ["", f"> **{sec.error}**"]
        lines += [""] + [
            f"- **{c}** from this run: **{cv.label}** — {cv.reason}"
            for c, cv in sec.claim_verdicts.items()
        ]
        stat_lines = []
        for cv in sec.claim_verdicts.values():
            for v in cv.rows:
                role = "" if v.primary else " (secondary)"
                stat_lines.append(
                    f"| {_md(v.claim)} | {_md(v.statistic + role)} | {_md(estimate_text(v))} | "
                    f"{v.n_seeds} | **{_md(v.label)}** | {_md(v.power or v.detail)} |"
                )
            for check, value, ok in cv.checks:
                stat_lines.append(
                    f"| {_md(cv.claim)} | check: {_md(check.text)} | {fmt(value)} "
                    f"(needs {check.op} {check.threshold:g}) | | **{'passes' if ok else 'fails'}** | |"
                )
        if stat_lines:
            lines += ["", "| claim | statistic | estimate [95% CI] | n | verdict | power / detail |",
                      "|---|---|---|---|---|---|", *stat_lines]  # fmt: skip
        for f in sec.figures:
            data = f" · [data](results/{f}.csv)" if f in sec.figure_data else ""
            lines += ["", f"![{f}](figures/{f}.png)", "", f"_{f}_ — [SVG](figures/{f}.svg){data}"]
        lines += ["", "| run metadata | |", "|---|---|"]
        lines += [f"| {_md(k)} | {_md(v)} |" for k, v in meta(sec).items()]
    return "\n".join(lines) + "\n"
