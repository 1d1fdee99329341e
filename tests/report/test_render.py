"""`normtheory.report.render`, end to end from stored runs: one row per claim, missing or partial
results and broken statistics functions give visible rows (never a crash), a test changed after a
run is flagged, each figure's data and the provenance are written. (The pages' markup, escaping,
legend, self-containment and the final-metric sentence: ``test_markup.py``.)"""

import json
import shutil

import pandas as pd
import pytest

from normtheory.claims import CLAIMS
from normtheory.cli import main
from normtheory.exact import EXACT_CLAIMS


@pytest.fixture(scope="module")
def report(report_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    argv = ["report", *(str(p) for p in report_runs.values()), "--out", str(out)]
    assert main(argv) == 0
    return out


def _claims(report) -> pd.DataFrame:
    return pd.read_csv(report / "results" / "claims.csv", keep_default_na=False)


def _rows(report) -> pd.DataFrame:
    return pd.read_csv(report / "results" / "rows.csv", keep_default_na=False)


def test_one_row_per_claim_and_exact_checks_hold(report):
    """Audit regression: 45 verdict rows for 23 claims and no one verdict per claim. The top
    table has exactly one row per registered claim, in the registry's order, with the columns a
    reader needs at a glance."""
    claims = _claims(report)
    assert list(claims["claim"]) == list(CLAIMS)
    for col in ("statement", "setting", "paper", "scale", "label", "statistic", "estimate",
                "effect", "test", "reason"):  # fmt: skip
        assert col in claims, col
    exact = claims[claims["claim"].isin(EXACT_CLAIMS)]
    assert set(exact["verdict"]) == {"exact-holds"} and set(exact["run"]) == {"exact"}
    html, md = (report / "index.html").read_text(), (report / "README.md").read_text()
    for claim in CLAIMS:
        assert html.count(f'data-claim="{claim}"') == 1 and f"| {claim} |" in md
    assert f"{len(CLAIMS)} claims:" in html
    assert all(t.startswith("test ") for t in claims["test"])


def test_unrun_partial_and_broken_runs_are_visible_rows(report):
    claims = _claims(report).set_index("claim")
    # a claim no run tested names the command that would test it
    assert claims.loc["WS-SINGULAR", "verdict"] == "not run"
    assert "normtheory run singularities" in claims.loc["WS-SINGULAR", "reason"]
    assert claims.loc["BN-SMOOTH", "verdict"] == "not run"
    rows = _rows(report)
    by_run = {run: r for run, r in rows.groupby("run")}
    # the tiny study gives GN-BATCH decided rows (2 seeds: underpowered)
    tiny = by_run["tiny"]
    assert set(tiny["claim"]) == {"GN-BATCH"} and set(tiny["name"]) == {"bn_rise", "gn_rise"}
    assert set(tiny["label"]) == {"inconclusive (underpowered: 2 < 5 seeds)"}
    assert "broken" not in by_run  # its statistics raised: no rows
    html = (report / "index.html").read_text()
    assert "statistics failed: RuntimeError: boom" in html and "(PARTIAL)" in html
    assert "partial run: 2 of 4 cells" in html


def test_statistic_rows_list_checks_and_power(report):
    html = (report / "index.html").read_text()
    assert "check: BN at the largest batch reaches ≥ 85 % test accuracy" in html
    assert "p (Holm)" in html


def _report_of(run, tmp_path) -> pd.DataFrame:
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    return _claims(tmp_path / "rep").set_index("claim")


def test_a_test_changed_after_the_run_is_flagged(report_runs, tmp_path):
    """Audit regression: EX-WEIGH's statistic changed after its results were in and nothing
    recorded it. A run stores the registered tests' hashes at its start; the report flags a
    claim whose test changed since, and one whose run predates the registry."""
    changed = tmp_path / "changed"
    shutil.copytree(report_runs["tiny"], changed)
    manifest = json.loads((changed / "manifest.json").read_text())
    assert manifest["tests"]["GN-BATCH"] == CLAIMS["GN-BATCH"].digest
    assert "changed" not in _report_of(report_runs["tiny"], tmp_path / "a").loc["GN-BATCH", "test"]
    manifest["tests"]["GN-BATCH"] = "0" * 12
    (changed / "manifest.json").write_text(json.dumps(manifest))
    test = _report_of(changed, tmp_path / "b").loc["GN-BATCH", "test"]
    assert "test changed at" in test and "after this run: rerun" in test
    del manifest["tests"]
    (changed / "manifest.json").write_text(json.dumps(manifest))
    test = _report_of(changed, tmp_path / "c").loc["GN-BATCH", "test"]
    assert "registered after this run" in test


def test_figures_and_the_data_behind_them(report, report_runs):
    figures = report / "figures"
    for run in ("tiny", "partial", "broken"):
        assert (figures / f"{run}-loss.png").stat().st_size > 5_000
        assert (figures / f"{run}-loss.svg").exists()
        data = pd.read_csv(report / "results" / f"{run}-loss.csv")
        assert {"step", "mean", "low", "high", "norm", "metric"} <= set(data.columns)
        assert set(data["norm"]) == ({"none"} if run == "partial" else {"batch", "none"})
    exact = pd.read_csv(report / "results" / "exact-error_vs_tolerance.csv")
    assert set(exact["claim"]) == set(EXACT_CLAIMS) and (exact["error"] < exact["tolerance"]).all()
    html = (report / "index.html").read_text()
    for stem in ("tiny-loss", "exact-error_vs_tolerance"):
        assert f"src='figures/{stem}.png'" in html and f"href='results/{stem}.csv'" in html
        assert f'href="#fig-{stem}"' in html  # the claims table links to the figure


def test_provenance_at_the_top_of_every_file(report):
    first = (report / "index.html").read_text().split("<h1>")[0]
    assert (
        "Generated by `normtheory report" in first
        or "Generated by <code>normtheory report" in first
    )
    assert (report / "README.md").read_text().startswith("<!-- Generated by `normtheory report")
    prov = (report / "results" / "PROVENANCE.txt").read_text()
    assert prov.startswith("Generated by `normtheory report") and "claims.csv" in prov
    assert "tiny-loss.csv" in prov
    assert (report / "figures" / "PROVENANCE.txt").exists()


def test_figures_only_rerenders_figures(report_runs, tmp_path):
    out = tmp_path / "rep"
    assert main(["report", str(report_runs["tiny"]), "--out", str(out), "--figures-only"]) == 0
    assert (out / "figures" / "tiny-loss.png").exists()
    assert (out / "results" / "tiny-loss.csv").exists()
    assert not (out / "index.html").exists()


def test_a_run_with_no_cells_is_a_visible_not_run_row(report_runs, tmp_path):
    empty = tmp_path / "empty"
    shutil.copytree(report_runs["tiny"], empty)
    shutil.rmtree(empty / "cells")
    assert main(["report", str(empty), "--out", str(tmp_path / "rep")]) == 0
    claims = _claims(tmp_path / "rep").set_index("claim")
    assert claims.loc["GN-BATCH", "verdict"] == "not run"
    assert "no complete cells stored" in claims.loc["GN-BATCH", "reason"]
    assert (tmp_path / "rep" / "figures" / "empty-loss.png").exists()  # a 'missing' panel


def test_a_report_removes_what_it_wrote_before_and_no_longer_belongs(report_runs, tmp_path):
    """The quick start's report over an old one: the figures and tables of a run no longer
    reported go; a user's own file in the same folders stays."""
    out = tmp_path / "rep"
    both = [str(report_runs["tiny"]), str(report_runs["partial"])]
    assert main(["report", *both, "--out", str(out)]) == 0
    assert (out / "figures" / "partial-loss.png").exists()
    (out / "figures" / "my-notes.txt").write_text("mine")
    (out / "results" / "mine.csv").write_text("a\n1\n")
    assert main(["report", both[0], "--out", str(out)]) == 0
    left = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert not [f for f in left if "partial" in f]
    assert {"figures/tiny-loss.png", "figures/my-notes.txt", "results/mine.csv"} <= left
    listed = set(json.loads((out / ".normtheory-report.json").read_text()))
    assert listed == left - {"figures/my-notes.txt", "results/mine.csv", ".normtheory-report.json"}
    prov = (out / "results" / "PROVENANCE.txt").read_text()
    assert "mine.csv" not in prov and "partial" not in prov  # it lists what it wrote
    # a figures-only pass keeps the pages and the tables it did not redraw
    assert main(["report", both[0], "--out", str(out), "--figures-only"]) == 0
    assert (out / "index.html").exists() and (out / "results" / "claims.csv").exists()


@pytest.mark.parametrize("what", ["empty", "foreign", "missing"])
def test_a_refused_report_creates_nothing(tmp_path, what, capsys):
    run = tmp_path / "run"
    if what != "missing":
        run.mkdir()
    if what == "foreign":
        (run / "data.txt").write_text("not a run")
    out = tmp_path / "rep"
    assert main(["report", str(run), "--out", str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_report_drawn_in_worker_processes_is_the_serial_one_byte_for_byte(report_runs, tmp_path):
    """`--workers` only spreads the runs' sections over processes: the same files, byte for byte
    (the pages but for their provenance line), in the runs' order."""
    runs = [str(p) for p in report_runs.values()]
    serial, pooled = tmp_path / "serial", tmp_path / "pooled"
    assert main(["report", *runs, "--out", str(serial), "--workers", "1"]) == 0
    assert main(["report", *runs, "--out", str(pooled), "--workers", "3"]) == 0
    files = sorted(p.relative_to(serial) for p in serial.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(pooled) for p in pooled.rglob("*") if p.is_file())
    for f in files:
        a, b = (serial / f).read_bytes(), (pooled / f).read_bytes()
        if f.name in ("README.md", "index.html", "PROVENANCE.txt"):
            a, b = (
                [line for line in x.decode().splitlines() if "Generated by " not in line]
                for x in (a, b)
            )
        assert a == b, f


def test_a_bad_worker_count_is_one_line_and_exit_2(report_runs, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", str(report_runs["tiny"]), "--out", str(out), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and "workers must be an integer >= 1, got 0" in err[0]
    assert not out.exists()


def test_a_tuning_run_says_it_decides_no_claim_and_lists_no_failing_checks(tmp_path):
    """A tuning run's errors are on a validation split: its section says so instead of "no
    statistic reported", and lists no manipulation check as failing for want of a value."""
    from pathlib import Path

    from normtheory.report.render import TUNING_RUN

    run = Path(__file__).resolve().parents[2] / "reference" / "runs"
    run = run / "bn_preconditioning-tune_standard"
    assert main(["report", str(run), "--out", str(tmp_path), "--workers", "1"]) == 0
    page = (tmp_path / "README.md").read_text()
    section = page[page.index("## bn_preconditioning:") :]
    assert f"**not run** — {TUNING_RUN}" in section
    assert "check:" not in section and "lr_tuning" in section
