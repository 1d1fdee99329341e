"""`normtheory.cli`: argument parsing, what each command calls with which arguments, what it prints
and its exit code (0 done, 1 failed cells or a failing exact claim, 2 bad input, one line on
stderr). The commands' work is replaced by stand-ins that record their calls, so these tests run
in milliseconds; end-to-end runs are in ``test_bad_input.py``, ``test_sweep.py``,
``test_verify.py``, ``test_sequential.py`` and the report tests."""

import os
import shlex
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

import normtheory.report
import normtheory.sweep
import normtheory.verify
from normtheory import __version__
from normtheory.claims import CLAIMS
from normtheory.cli import _cores, main
from normtheory.registry import list_studies, load_study
from normtheory.sweep import RunSummary

STUDY = str(Path(__file__).with_name("fault_study.py"))


@pytest.fixture
def sweep(monkeypatch, tmp_path):
    """Replaces `run_sweep`: records (study name, kwargs); ``.failed`` sets failed cells."""
    calls = SimpleNamespace(args=[], failed=0)

    def fake(study, **kw):
        calls.args.append((study.name, kw))
        summary = RunSummary(tmp_path / "run", cells=2, seeds=2, total=4)
        summary.completed = 4 - calls.failed
        summary.failed = calls.failed
        summary.errors = [f"cell{i} seed=0: RuntimeError: boom" for i in range(calls.failed)]
        return summary

    monkeypatch.setattr(normtheory.sweep, "run_sweep", fake)
    return calls


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"normtheory {__version__}"


@pytest.mark.parametrize(
    "argv, prefix",
    [
        ([], "normtheory: error: "),
        (["frobnicate"], "normtheory: error: "),
        (["run"], "normtheory run: error: "),
        (["run", STUDY, "--bogus"], "normtheory: error: "),
        (["run", STUDY, "--device", "gpu"], "normtheory run: error: argument --device"),
        (["verify", "--executor", "threads"], "normtheory verify: error: argument --executor"),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(argv, prefix, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(prefix) and len(err.strip().splitlines()) == 1
    assert err.count("normtheory") == 1  # no doubled "normtheory: error: normtheory run:"


def test_list_prints_every_study_and_the_statements_of_its_claims(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in list_studies():
        study = load_study(name)
        assert f"{name:22s} {study.title}" in out
        for claim in study.claims:
            assert f"  {claim:14s} {CLAIMS[claim].statement}" in out
        for pname, prof in study.profiles.items():  # each profile with its tier (and cost)
            seeds = f"{prof.seeds:2d} seed{'s' if prof.seeds != 1 else ' '}"
            line = f"  profile {pname:13s} tier {study.tier(pname):8s} {seeds}"
            assert line in out
            if prof.cost:
                assert any(row.startswith(line) and prof.cost in row for row in out.splitlines())
    # the longest profile name (tune_standard) sets the column: the tiers line up
    tiers = {row.index(" tier ") for row in out.splitlines() if row.startswith("  profile ")}
    assert len(tiers) == 1 and " 1 seed  " in out and " 1 seeds" not in out


def test_run_passes_the_options_and_overrides_given_anywhere(sweep, capsys):
    argv = ["run", STUDY, "steps=5", "--profile", "faults", "--seeds", "3", "--device", "cpu",
            "--out", "somewhere", "lr=0.1,0.2", "--threads", "2", "--data-root", "data",
            "--amp", "bf16"]  # fmt: skip
    assert main(argv) == 0
    ((name, kw),) = sweep.args
    assert name == "fault_study"
    assert kw.pop("progress") is not None
    assert kw == dict(
        profile="faults", seeds=3, device="cpu", out="somewhere",
        overrides={"steps": "5", "lr": "0.1,0.2"}, executor="local", workers=1, threads=2,
        ray_address=None, data_root="data", amp="bf16", command="normtheory " + shlex.join(argv),
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "fault_study: 4 runs (2 cells × 2 seeds)" in out and "next: normtheory report" in out


def test_run_defaults(sweep):
    assert main(["run", STUDY]) == 0
    ((_, kw),) = sweep.args
    assert (kw["profile"], kw["seeds"], kw["device"], kw["out"]) == (None, None, "auto", None)
    assert (kw["executor"], kw["workers"], kw["threads"], kw["overrides"]) == ("local", 1, 1, {})
    assert kw["data_root"] is None  # run_sweep then reads NORMTHEORY_DATA


@pytest.mark.parametrize("command", ["run", "verify"])
def test_data_root_option_is_named_in_help(command, capsys):
    assert main([command, "--help"]) == 0
    help_ = " ".join(capsys.readouterr().out.split())
    assert "--data-root DIR" in help_ and "$NORMTHEORY_DATA" in help_
    assert "apt-get install dataset-fashion-mnist" in help_


@pytest.mark.parametrize(
    "options,workers",
    [(["--executor", "process"], 2), (["--executor", "process", "--workers", "3"], 3)],
)
def test_a_pool_gets_two_workers_unless_told(options, workers, sweep):
    assert main(["run", STUDY, *options]) == 0
    assert sweep.args[0][1]["workers"] == workers


def test_failed_cells_exit_1_and_list_at_most_five_errors(sweep, capsys):
    sweep.failed = 7
    assert main(["run", STUDY]) == 1
    out = capsys.readouterr().out
    assert out.count("  failed: cell") == 5 and "cell4 seed=0" in out and "cell5" not in out
    assert "7 cell(s) failed" in out and "rerun the same command" in out
    assert "next: normtheory report" not in out


def test_a_multi_line_error_is_shown_as_its_first_line(monkeypatch, capsys):
    def fake(study, **kw):
        raise ValueError("the first line\nand more detail")

    monkeypatch.setattr(normtheory.sweep, "run_sweep", fake)
    assert main(["run", STUDY]) == 2
    assert capsys.readouterr().err == "normtheory: error: the first line\n"


def test_ctrl_c_says_how_to_resume(monkeypatch, capsys):
    def fake(study, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(normtheory.sweep, "run_sweep", fake)
    assert main(["run", STUDY]) == 2
    assert "interrupted; complete cells are stored, rerun the same command" in (
        capsys.readouterr().err
    )


@pytest.fixture
def report(monkeypatch, tmp_path):
    calls = []

    def fake(runs, out, *, command, figures_only, workers):
        calls.append((list(runs), out, command, figures_only, workers))
        return Path(out) / "index.html"

    monkeypatch.setattr(normtheory.report, "build_report", fake)
    monkeypatch.setattr(normtheory.report, "find_runs", lambda root: [tmp_path / "found"])
    (tmp_path / "found").mkdir()
    return calls


def test_report_of_named_runs_and_of_every_run_under_runs(report, tmp_path, capsys):
    run = tmp_path / "a"
    run.mkdir()
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    cores = min(8, len(os.sched_getaffinity(0)))  # the default: one process per core, ≤ 8
    assert report[-1] == ([run], str(tmp_path / "rep"), f"normtheory report {run} --out "
                          f"{tmp_path / 'rep'}", False, cores)  # fmt: skip
    assert f"report: {tmp_path / 'rep' / 'index.html'} (1 run(s))" in capsys.readouterr().out
    assert main(["report", "--figures-only", "--workers", "3"]) == 0
    assert report[-1][0] == [tmp_path / "found"] and report[-1][1:] == (
        "reports", "normtheory report --figures-only --workers 3", True, 3,
    )  # fmt: skip
    assert capsys.readouterr().out.strip() == f"figures: {Path('reports') / 'figures'}"


def test_the_report_default_counts_cores_where_the_os_cannot_say_which(monkeypatch):
    """macOS has no sched_getaffinity: the report's default falls back to the CPU count."""
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert _cores() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert _cores() == 1


def test_report_of_a_missing_folder_is_bad_input(report, tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert f"no results folder at {tmp_path / 'nowhere'}" in capsys.readouterr().err
    assert report == []


@pytest.mark.parametrize(
    "verdicts,code",
    [(["exact-holds", "supported"], 0), (["exact-fails", "exact-holds", "refuted"], 1)],
)
def test_verify_prints_the_table_and_exits_1_only_for_a_failing_exact_claim(
    verdicts, code, monkeypatch, tmp_path, capsys
):
    calls = []
    claims = pd.DataFrame({
        "claim": [f"C{i}" for i in range(len(verdicts))], "verdict": verdicts, "label": verdicts,
        "statistic": "s", "estimate": "1", "reason": "", "seeds": 5, "profile": "quick",
    })  # fmt: skip

    def fake(**kw):
        calls.append(kw)
        return normtheory.verify.Verified(tmp_path / "index.html", claims, failed_studies=["x"])

    monkeypatch.setattr(normtheory.verify, "verify", fake)
    argv = ["verify", "--studies", "a, b,", "--device", "cpu", "--out", "o", "--data-root", "d"]
    assert main(argv) == code
    (kw,) = calls
    assert kw["studies"] == ["a", "b"] and kw["skip_studies"] is False and kw["data_root"] == "d"
    assert (kw["runs"], kw["out"], kw["device"], kw["executor"]) == ("runs", "o", "cpu", "local")
    captured = capsys.readouterr()
    assert "normtheory: claims" in captured.out and "C0" in captured.out
    assert "studies with failed cells or not run: x" in captured.err
    assert ("exact claims that fail: C0" in captured.err) == (code == 1)


def test_without_a_terminal_progress_is_one_line_per_finished_run(capsys, monkeypatch):
    import normtheory.cli as cli

    clock = iter([0.0, 0.0, 60.0, 300.0, 420.0])  # made, task added, then at each line
    monkeypatch.setattr(cli.time, "monotonic", lambda: next(clock, 420.0))
    with cli._progress() as progress:  # capsys: stderr is not a terminal
        sweep = progress.add_task("demo [quick]", total=8, completed=2)  # 2 already stored
        steps = progress.add_task("steps", total=100)  # the loop's bar: no lines
        progress.update(sweep, advance=1)
        progress.update(steps, advance=50)
        progress.update(sweep, advance=3)
        progress.update(sweep, advance=2)
        progress.remove_task(steps)
    # the pace counts only the runs finished here: 1 in 60 s, then 4 in 300 s
    assert capsys.readouterr().err.splitlines() == [
        "demo [quick]: 2/8 runs already stored",
        "demo [quick]: 3/8 runs done (1m 00s, ≈5m 00s left at this pace)",
        "demo [quick]: 6/8 runs done (5m 00s, ≈2m 30s left at this pace)",
        "demo [quick]: 8/8 runs done (7m 00s)",
    ]


def test_a_long_time_reads_in_hours():
    from normtheory.cli import _clock

    assert (_clock(59.9), _clock(3599), _clock(3600 + 125)) == ("0m 59s", "59m 59s", "1h 02m")
