"""Builds ``index.html`` (self-contained: inline CSS, figures as files next to it), ``README.md``,
``figures/`` and the tables behind them in ``results/``.

Reads only stored run folders: verdicts and figures are recomputed from the tidy tables by the
study's own functions, so a report regenerates without retraining. The exact-check results of
``exact_checks`` study are a run like any other. Every claim of the
catalogue gets a row; a claim no run tested, a run with missing cells or a verdict function that
raises gives a visible "not run" / "partial" row, never a crash.
"""

import json
import multiprocessing
import traceback
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from normtheory.checks import check_int
from normtheory.plots import missing_figure
from normtheory.provenance import float_path, git_commit, now, versions
from normtheory.registry import list_studies, load_study
from normtheory.report.data import figure_data
from normtheory.report.markup import html_page, markdown_page
from normtheory.report.tables import ROW_COLUMNS, Section, claim_rows, statistic_rows
from normtheory.results import MANIFEST, Results, ResultsError, RunDir
from normtheory.stats import NOT_RUN
from normtheory.tuning import is_tuning
from normtheory.verdicts import ClaimVerdict, judge_study


def find_runs(root: str | Path = "runs") -> list[Path]:
    """Run folders (those holding a manifest) under `root`, sorted."""
    root = Path(root)
    if (root / MANIFEST).exists():
        return [root]
    return sorted(p.parent for p in root.glob(f"*/{MANIFEST}"))


def testers() -> dict[str, list[str]]:
    """claim -> the commands that test it: ``normtheory run <study>`` for every study declaring
    the claim (the exact checks too: ``normtheory run exact_checks``)."""
    out: dict[str, list[str]] = {}
    for name in list_studies():
        try:
            study = load_study(name)
        except Exception:  # a broken study module must not break the report
            continue
        for claim in study.claims:
            out.setdefault(claim, []).append(f"normtheory run {name}")
    return out


FIGURE_DPI = 110  # the PNGs' resolution

RENDERING = ("matplotlib", "seaborn", "pandas", "numpy", "scipy", "statsmodels")


TUNING_RUN = (
    "a tuning run (evaluated on a validation split, not the test split): it chooses the "
    "learning rates the study's verdict profiles train at and decides no claim"
)


def rendered_with() -> str:
    """The versions and the CPU code path (`float_path`) the figures and tables were drawn with:
    with both the same, the same stored runs regenerate them byte-identically; on another path the
    numbers differ in their last bits."""
    have = versions()
    drawn = ", ".join(f"{p} {have.get(p, '?')}" for p in RENDERING)
    return f"Rendered with {drawn} on {float_path()}."


def _save_figure(fig, stem: str, out: Path, sec: Section, partial_note: str) -> None:
    if partial_note:  # a visible mark on every figure of an incomplete run
        fig.text(0.5, 1.0, partial_note, ha="center", va="bottom", color="crimson", fontsize=11)
    texts = [fig._suptitle.get_text() if fig._suptitle else ""] + [a.get_title() for a in fig.axes]
    sec.figure_texts[stem] = " ".join(texts)
    # No date metadata and a fixed SVG id salt: unchanged figures regenerate byte-identical.
    png = out / "figures" / f"{stem}.png"
    # The tight box once for both files, as savefig(bbox_inches="tight") finds it for the PNG:
    # each "tight" save would draw the figure an extra time and measure every text again.
    fig.set_dpi(FIGURE_DPI)
    fig.draw_without_rendering()
    box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(
        matplotlib.rcParams["savefig.pad_inches"]
    )
    fig.savefig(png, dpi=FIGURE_DPI, bbox_inches=box, metadata={"Software": None})
    with matplotlib.rc_context({"svg.hashsalt": "normtheory"}):  # reproducible SVG ids
        fig.savefig(
            png.with_suffix(".svg"), bbox_inches=box, metadata={"Date": None, "Creator": None}
        )
    data = figure_data(fig)
    if len(data):
        data.to_csv(out / "results" / f"{stem}.csv", index=False)
        sec.figure_data.add(stem)
    plt.close(fig)
    sec.figures.append(stem)
    sec.written += [f"figures/{stem}.png", f"figures/{stem}.svg"]
    if stem in sec.figure_data:
        sec.written.append(f"results/{stem}.csv")


def _measured(sec: Section, results: Results) -> str:
    config = sec.manifest.get("config", {})
    cells = config.get("cells", [])
    axes = [
        f"{a} ∈ {{{', '.join(str(v) for v in dict.fromkeys(c.get(a) for c in cells))}}}"
        for a in config.get("axes", [])
    ]
    cases = config.get("cases", [])
    what = ", ".join(
        (
            [f"{len(cases)} cases ({', '.join(str(c.get('tag', c)) for c in cases)})"]
            if cases
            else []
        )
        + axes
    )
    metrics = sorted(results.records["metric"].dropna().unique()) if len(results.records) else []
    shown = ", ".join(metrics[:14]) + (
        f" and {len(metrics) - 14} more" if len(metrics) > 14 else ""
    )
    return (
        f"Measured: {len(cells)} cell(s){f' ({what})' if what else ''} × "
        f"{config.get('seeds', '?')} seed(s), {sec.complete} of {sec.expected} stored complete"
        f"{' (PARTIAL)' if sec.partial else ''}; recorded metrics: {shown or 'none'}."
    )


def _study_section(
    run: Path, manifest: dict, results: Results, out: Path, figures_only: bool
) -> Section:
    name = manifest.get("study", "?")
    try:
        study = load_study(manifest.get("study_path") or name)
    except Exception as err:
        reason = f"study {name!r} cannot be loaded: {type(err).__name__}: {err}"
        return Section(run, name, "(study not found)", "", manifest, error=reason)
    config = manifest.get("config", {})
    cells = results.cells
    sec = Section(
        run,
        study.name,
        study.title,
        study.description.split("\n\n")[0],
        manifest,
        cells=cells,
        expected=len(config.get("cells", [])) * int(config.get("seeds", 0) or 0),
        complete=int((cells["status"] != "failed").sum()) if len(cells) else 0,
    )
    sec.expected = max(sec.expected, sec.complete)
    sec.measured = _measured(sec, results)
    if not figures_only:
        reason = ""
        if sec.complete == 0:
            reason = sec.error = f"no complete cells stored in {run} (0 of {sec.expected})"
        elif is_tuning(cells):  # no verdict, no check: its errors are validation errors
            reason = TUNING_RUN
        else:
            try:
                sec.claim_verdicts = judge_study(study, results)
            except Exception as err:  # a broken study must not hide the others
                sec.error = f"statistics failed: {type(err).__name__}: {err}"
                reason = f"the study's statistics failed ({type(err).__name__}: {err})"
                traceback.print_exc()
        if sec.partial:
            reason += f"{'; ' if reason else ''}partial run: {sec.complete} of {sec.expected} cells"
            for cv in sec.claim_verdicts.values():
                cv.reason += f" ({reason})"
        for c in study.claims:
            sec.claim_verdicts.setdefault(c, ClaimVerdict(c, NOT_RUN, reason=reason))
    note = f"partial results: {sec.complete} of {sec.expected} cells" if sec.partial else ""
    for fig_name, fn in study.figures.items():
        try:
            fig = fn(results)
        except Exception as err:
            fig = missing_figure(fig_name, [f"{type(err).__name__}: {err}"])
        if fig is None:  # the figure does not apply to this run
            continue
        _save_figure(fig, f"{run.name}-{fig_name}", out, sec, note)
    cells.to_csv(out / "results" / f"{run.name}-cells.csv", index=False)
    sec.written.append(f"results/{run.name}-cells.csv")
    return sec


def _section_of(run: Path, out: Path, figures_only: bool) -> Section:
    """One run's section, read and drawn here (in a worker process of `_sections` too)."""
    matplotlib.use("Agg")
    return _study_section(run, RunDir(run).manifest(), Results.load(run), out, figures_only)


def _sections(runs: list[Path], out: Path, figures_only: bool, workers: int) -> list[Section]:
    """The runs' sections in their order; with `workers` > 1 in a process pool, the largest runs
    first (the figures dominate a report's time, and each run's are independent)."""
    workers = min(workers, len(runs))
    if workers <= 1:
        return [_section_of(run, out, figures_only) for run in runs]
    size = {run: sum(f.stat().st_size for f in run.rglob("*") if f.is_file()) for run in runs}
    order = sorted(runs, key=lambda run: -size[run])
    context = multiprocessing.get_context("forkserver")  # no fork of a process holding threads
    context.set_forkserver_preload(["normtheory.report.render"])
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        done = dict(zip(order, pool.map(_section_of, order, repeat(out), repeat(figures_only))))
    return [done[run] for run in runs]


WRITTEN = ".normtheory-report.json"  # the files the last report wrote into its folder


def _prune(out: Path, written: set[str], keep_others: bool) -> None:
    """Deletes the files the previous report listed in `WRITTEN` that this one did not write
    (e.g. the figures of a run no longer reported), never a file it did not write itself; then
    lists this report's files (`keep_others`: a figures-only pass keeps the rest listed)."""
    listing = out / WRITTEN
    before = set(json.loads(listing.read_text())) if listing.exists() else set()
    if keep_others:
        written = written | {f for f in before if not f.startswith("figures/")}
    for name in sorted(before - written):
        path = out / name
        if path.is_file() and path.resolve().is_relative_to(out.resolve()):
            path.unlink()
    listing.write_text(json.dumps(sorted(written), indent=0) + "\n")


def build_report(
    run_dirs: list[str | Path],
    out: str | Path = "reports",
    *,
    command: str = "",
    figures_only: bool = False,
    workers: int = 1,
) -> Path:
    """Writes the report for `run_dirs` into `out`; returns the path of index.html.

    Files: ``index.html`` and ``README.md`` (provenance line first), ``figures/<run>-<name>``
    ``.png``/``.svg``, ``results/<run>-<name>.csv`` (the data behind each figure),
    ``results/<run>-cells.csv``, ``results/claims.csv`` and ``PROVENANCE.txt`` in both folders.
    With `figures_only` only the figures and their data are written. With `workers` > 1 the runs'
    sections (their statistics, figures and tables) are built in that many processes; the files
    are the same byte for byte.
    """
    matplotlib.use("Agg")  # files only: the report never opens a window
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ResultsError(f"report output {out} is a file, not a folder")
    runs = [Path(r) for r in run_dirs]
    if not runs:
        raise ResultsError(
            "no run folders to report on; run a study first (normtheory run batch_size --profile quick)"
        )
    workers = check_int("workers", workers)
    # Every run is checked before anything is written: a refused report creates nothing.
    for run in runs:
        RunDir(run).check()
    # Provenance first: writing the (tracked) figures below would make the tree look dirty.
    provenance = (
        f"Generated by `{command or 'normtheory report'}` at commit {git_commit()} on {now()}."
    )
    for sub in ("figures", "results"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    sections = _sections(runs, out, figures_only, workers)
    sections.sort(key=lambda s: s.study_name != "exact_checks")  # the identities first
    written = {f for sec in sections for f in sec.written} | {"figures/PROVENANCE.txt"}
    (out / "figures" / "PROVENANCE.txt").write_text(f"{provenance}\n{rendered_with()}\n")
    if figures_only:
        _prune(out, written, keep_others=True)
        return out / "index.html"
    rows = claim_rows(sections, testers())
    pd.DataFrame(rows).to_csv(out / "results" / "claims.csv", index=False)
    table = pd.DataFrame(statistic_rows(sections), columns=ROW_COLUMNS)
    table.to_csv(out / "results" / "rows.csv", index=False)
    written |= {"results/claims.csv", "results/rows.csv", "results/PROVENANCE.txt"}
    written |= {"index.html", "README.md"}
    csvs = sorted(Path(f).name for f in written if f.startswith("results/") and f.endswith(".csv"))
    (out / "results" / "PROVENANCE.txt").write_text(
        f"{provenance}\nEvery CSV in this folder was written by that command: "
        + ", ".join(csvs)
        + "\n"
    )
    (out / "index.html").write_text(html_page(sections, rows, provenance))
    (out / "README.md").write_text(markdown_page(sections, rows, provenance))
    _prune(out, written, keep_others=False)
    return out / "index.html"
