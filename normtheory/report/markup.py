"""The report's two pages from the same content: ``index.html`` (self-contained: inline CSS, no
scripts, no external fetches; figures as files next to it) and ``README.md`` (renders on a code
host). Both open with the provenance line and the claims table."""

import html
import re
from collections import Counter

from normtheory.report.tables import LEGEND, NOT_RUN, Section, meta

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1320px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:1em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}
table.claims{width:100%}table.claims td:first-child,td.num{white-space:nowrap}
table.claims td:nth-child(3){min-width:15em}table.claims td:nth-child(5){min-width:14em}
.supported{background:#d9f2d9}.refuted{background:#f8d7d7}.inconclusive{background:#fdf3cf}
.exact-holds{background:#c6ecc6}.exact-fails{background:#f4bcbc}
.notrun{background:#eee;color:#666}tr.notrun td{color:#777}
td.verdict{font-weight:600;white-space:nowrap}
.prov{color:#666;font-size:.85em}.measured{color:#444;font-size:.92em}
.error{background:#f8d7d7;padding:.4em .6em;border-left:4px solid crimson}
figure{margin:1.2em 0}img{max-width:100%;border:1px solid #ddd}
figcaption{color:#555;font-size:.85em}code{background:#f5f5f5;padding:1px 3px}
dl.legend{display:grid;grid-template-columns:max-content auto;gap:.25em 1em;font-size:.9em}
dl.legend dt{padding:0 .4em;font-weight:600}dl.legend dd{margin:0}
"""

HEAD = ["id", "source", "claim", "verdict", "statistic", "estimate [95% CI]", "seeds", "profile"]


def _e(text) -> str:
    """HTML-escaped text with `code` spans (commands) as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text)))


def _cls(verdict: str) -> str:
    return verdict.replace(" ", "")


def summary_line(rows: list[dict]) -> str:
    """E.g. ``23 claims: 10 supported, 2 refuted, ...`` (a claim counted by its rows' words)."""
    counts = Counter(r["verdict"] for r in rows)
    claims = len({r["claim"] for r in rows})
    words = ", ".join(f"{counts[w]} {w}" for w in LEGEND if counts[w])
    return f"{claims} claims, {len(rows)} verdict rows: {words}."


def html_page(sections: list[Section], rows: list[dict], provenance: str) -> str:
    e = html.escape
    body = []
    for r in rows:
        cls = _cls(r["verdict"])
        name = r["figure"].removeprefix(f"{r['run']}-")  # the run is in the title
        fig = (
            f'<a href="#fig-{e(r["figure"])}" title="{e(r["figure"])}">{e(name)}</a>'
            if r["figure"]
            else ""
        )
        source = r["source"].split(",")[0]  # authors and year; the title on hover
        title = f' title="{e(r["detail"])}"' if r["detail"] else ""
        body.append(
            f'<tr class="{"notrun" if r["verdict"] == NOT_RUN else ""}" data-claim="{e(r["claim"])}">'
            f'<td>{e(r["claim"])}</td><td title="{e(r["source"])}">{e(source)}</td>'
            f"<td>{e(r['statement'])}</td>"
            f'<td class="verdict {cls}"{title}>{e(r["verdict"])}</td>'
            f"<td>{_e(r['statistic'])}</td><td class='num'>{e(r['estimate'])}</td>"
            f"<td>{r['seeds']}</td><td>{e(r['profile'])}</td><td>{fig}</td></tr>"
        )
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
        f"<p class='prov'>{_e(provenance)}</p><h1>normtheory report</h1>",
        "<p>Which claims of the normalization literature hold at this scale: every claim of "
        "<code>shared/CLAIMS.md</code>, its verdict and the statistic behind it (hover a verdict "
        "for details, a source for the paper's title; each run's section below has the "
        f"figures). {e(summary_line(rows))}</p>",
        "<h2 id='claims'>Claims</h2><table class='claims'><tr>"
        + "".join(f"<th>{e(h)}</th>" for h in [*HEAD, "figure"])
        + "</tr>"
        + "".join(body)
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
        details = [
            f"<li><b>{e(v.claim)}</b> (<span class='{_cls(v.verdict)}'>{e(v.verdict)}</span>): "
            f"{e(v.detail)}</li>"
            for v in sec.verdicts
            if v.detail
        ]
        if details:
            parts.append(f"<ul>{''.join(details)}</ul>")
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
        f"_{provenance}_",
        "",
        "# normtheory report",
        "",
        "Which claims of the normalization literature hold at this scale: every claim of "
        f"`shared/CLAIMS.md`, its verdict and the statistic behind it. {summary_line(rows)}",
        "",
        "## Claims",
        "",
        "| " + " | ".join([*HEAD, "figure"]) + " |",
        "|" + "---|" * (len(HEAD) + 1),
    ]
    for r in rows:
        fig = f"[{r['figure']}](figures/{r['figure']}.png)" if r["figure"] else ""
        cells = [r["claim"], r["source"], r["statement"], f"**{r['verdict']}**", r["statistic"]]
        cells += [r["estimate"], r["seeds"], r["profile"], fig]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    lines += ["", "Verdicts:", ""]
    lines += [f"- **{w}**: {text}" for w, text in LEGEND.items()]
    for sec in sections:
        lines += ["", f"## {sec.study_name}: {sec.title}", "", sec.description, "", sec.measured]
        if sec.error:
            lines += ["", f"> **{sec.error}**"]
        details = [f"- **{v.claim}** ({v.verdict}): {v.detail}" for v in sec.verdicts if v.detail]
        lines += ["", *details] if details else []
        for f in sec.figures:
            data = f" · [data](results/{f}.csv)" if f in sec.figure_data else ""
            lines += ["", f"![{f}](figures/{f}.png)", "", f"_{f}_ — [SVG](figures/{f}.svg){data}"]
        lines += ["", "| run metadata | |", "|---|---|"]
        lines += [f"| {_md(k)} | {_md(v)} |" for k, v in meta(sec).items()]
    return "\n".join(lines) + "\n"
