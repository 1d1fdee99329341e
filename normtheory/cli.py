"""Command line: ``normtheory list | run | report | verify``.

Exit codes: 0 all cells completed or diverged (divergence is a result); 1 some cells failed
(stored with their error, retried on the next run); 2 bad input. Bad input (unknown study,
norm, key, value, executor, a missing, corrupt or foreign results folder, an unwritable output
folder) gives a one-line error naming the bad value and the valid choices, and no traceback;
nothing already stored is changed.
"""

import argparse
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

from normtheory import __version__
from normtheory.executors import EXECUTORS
from normtheory.results import ResultsError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message)
        raise SystemExit(_fail(message, self.prog))


def _fail(message: str, prog: str = "normtheory") -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _warn(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (e.g. an override some cells ignore) as one line, without the source line."""
    print(f"normtheory: warning: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="normtheory",
        description="Put the theory of normalization layers to the test.",
        epilog="example: normtheory run batch_size --profile quick && normtheory report"
        "  (then open reports/index.html)",
    )
    parser.add_argument("--version", action="version", version=f"normtheory {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the studies and the claims they test")
    run = sub.add_parser(
        "run",
        help="run a study's grid into a run folder (complete cells are skipped)",
        epilog="overrides: key=value sets a cell field (e.g. steps=50); key=a,b makes it a grid axis (e.g. norm=batch,group)",
    )
    run.add_argument(
        "study", help="study name (see `normtheory list`) or path to a .py file defining STUDY"
    )
    run.add_argument("overrides", nargs="*", metavar="key=value", help="cell field overrides")
    run.add_argument(
        "--profile",
        default=None,
        help="profile: quick (the default), standard, paper (CIFAR-10, for a GPU) or full; a "
        "study of your own: its only profile",
    )
    run.add_argument(
        "--seeds", type=int, default=None, help="number of seeds (default: the profile's)"
    )
    run.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto = CUDA when present"
    )
    run.add_argument("--out", default=None, help="run folder (default runs/<study>-<profile>)")
    run.add_argument(
        "--until-decided",
        action="store_true",
        help="after the profile's seeds, add --seed-step seeds at a time (reusing every stored "
        "cell) until each claim is decided or --max-seeds is reached; tests are Bonferroni-"
        "corrected for the planned looks",
    )
    run.add_argument("--max-seeds", type=int, default=20, help="cap for --until-decided (20)")
    run.add_argument("--seed-step", type=int, default=2, help="seeds added per look (2)")
    _add_executor_options(run)
    _add_data_root_option(run)
    _add_amp_option(run)
    rep = sub.add_parser("report", help="build the report from stored run folders")
    rep.add_argument("runs", nargs="*", help="run folders (default: every run under runs/)")
    rep.add_argument("--out", default="reports", help="output folder (default reports/)")
    rep.add_argument("--figures-only", action="store_true", help="only re-render the figures")
    rep.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes drawing the runs' figures and statistics (default: one per CPU core, at "
        "most 8); the files are the same whatever the number",
    )
    ver = sub.add_parser(
        "verify",
        help="check the exact claims (seconds), run every study's quick profile (complete cells "
        "are reused), write the report and print the claims table; exit 1 if an exact claim fails",
    )
    ver.add_argument("--skip-studies", action="store_true", help="exact checks and the report only")
    ver.add_argument(
        "--reference",
        action="store_true",
        help="run each study's reference profiles (quick, plus standard where the claims need real "
        "data: hours on a CPU, resumable) — what the committed reference/ report is made from",
    )
    ver.add_argument(
        "--studies", default=None, help="comma-separated studies to run (default: all)"
    )
    ver.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto = CUDA when present"
    )
    ver.add_argument("--out", default="reports", help="report folder (default reports/)")
    ver.add_argument("--runs", default="runs", help="root of the run folders (default runs/)")
    _add_executor_options(ver)
    _add_data_root_option(ver)
    _add_amp_option(ver)
    return parser


def _add_amp_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--amp",
        default="off",
        choices=["off", "bf16", "fp16"],
        help="mixed precision of the training forward pass (default off): bf16 on CUDA or CPU, "
        "fp16 (with loss scaling) on CUDA only; hooks and measurements stay float32/64. Part "
        "of the run's config: a run folder refuses to resume with another setting",
    )


def _add_data_root_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root",
        default=None,
        metavar="DIR",
        help="folder of the local datasets: DIR/cifar-10-batches-py/, DIR/MNIST/raw/, "
        "DIR/fashion-mnist/ (default: $NORMTHEORY_DATA; fashion_mnist is also found in "
        "/usr/share/datasets/fashion-mnist after `apt-get install dataset-fashion-mnist`). "
        "Checked before any cell runs; recorded in the run's manifest, not in its config",
    )


def _add_executor_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--executor",
        default="local",
        choices=list(EXECUTORS),
        help="local: in-process, one cell at a time (default); process: a pool of --workers "
        "processes; ray: a Ray cluster (--ray-address) or a local Ray instance",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="processes for --executor process (default 2)"
    )
    parser.add_argument(
        "--ray-address", default=None, help="auto or HOST:PORT of a Ray cluster (default: local)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per cell (default 1, so numbers do not depend on the executor)",
    )


def _executor_kwargs(args) -> dict:
    """The sweep's executor arguments; --workers only means something for a pool."""
    if args.workers is not None and args.executor == "local":
        raise ValueError(f"--workers {args.workers} needs --executor process or ray, not local")
    workers = args.workers if args.workers is not None else (1 if args.executor == "local" else 2)
    return {
        "executor": args.executor,
        "workers": workers,
        "threads": args.threads,
        "ray_address": args.ray_address,
    }


class _Lines:
    """Progress for a pipe or a CI log (no terminal to draw a bar on): one line on stderr per
    finished run of a sweep (the first task added; per-step tasks are ignored), with the count,
    the elapsed time and, once a run has finished, the time left at the pace of the runs finished
    so far in this process (runs already stored, passed as ``completed`` to ``add_task``, do not
    count toward the pace). The subset of ``rich.progress.Progress`` the sweep and the loop use."""

    def __init__(self):
        self._tasks: dict[int, list] = {}  # id -> [description, total, done, done at start]
        self._start = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **kw):
        task = len(self._tasks)
        self._tasks[task] = [description, total, completed, completed]
        if task == 0:
            self._start = time.monotonic()
            if completed:
                _say(f"{description}: {completed:.0f}/{total:.0f} runs already stored")
        return task

    def update(self, task: int, advance: float = 0, **kw) -> None:
        entry = self._tasks.get(task)
        if task != 0 or entry is None or not advance:
            return
        entry[2] += advance
        elapsed = time.monotonic() - self._start
        line = f"{entry[0]}: {entry[2]:.0f}/{entry[1]:.0f} runs done ({_clock(elapsed)}"
        fresh, left = entry[2] - entry[3], (entry[1] or 0) - entry[2]
        if fresh > 0 and left > 0:
            line += f", ≈{_clock(elapsed / fresh * left)} left at this pace"
        _say(line + ")")

    def remove_task(self, task: int) -> None:
        self._tasks.pop(task, None)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _clock(secs: float) -> str:
    """``1h 02m``, ``4m 09s``: a duration at the precision a progress line needs."""
    secs = int(secs)
    if secs >= 3600:
        return f"{secs // 3600}h {secs % 3600 // 60:02d}m"
    return f"{secs // 60}m {secs % 60:02d}s"


def _progress():
    """A progress bar on a terminal; one line per finished run otherwise (pipes, CI logs)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if not sys.stderr.isatty():
        return _Lines()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=True,
    )


def _cmd_list(args) -> int:
    from normtheory.claims import CLAIMS
    from normtheory.registry import list_studies, load_study

    studies = [load_study(name) for name in list_studies()]
    width = max(len(p) for s in studies for p in s.profiles)  # profile names line up
    for study in studies:
        print(f"{study.name:22s} {study.title}")
        for claim in study.claims:
            print(f"  {claim:14s} {CLAIMS[claim].statement if claim in CLAIMS else '?'}")
        for pname, prof in study.profiles.items():
            about = "; ".join(x for x in (prof.description, prof.cost) if x)
            seeds = f"{prof.seeds:2d} seed{'s' if prof.seeds != 1 else ' '}"
            print(
                f"  profile {pname:{width}s} tier {study.tier(pname):8s} {seeds}"
                + (f"  {about}" if about else "")
            )
            for change in prof.changes:
                print(f"    changed after results were seen: {change}")
    return 0


def _overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key or not value:
            raise ValueError(
                f"bad override {pair!r}: expected key=value (e.g. steps=50 or norm=batch,group)"
            )
        out[key] = value
    return out


def _cmd_run(args, command: str) -> int:
    from normtheory.registry import load_study
    from normtheory.sweep import run_sweep

    study = load_study(args.study)
    overrides = _overrides(args.overrides)
    executor = _executor_kwargs(args)
    kw = dict(
        profile=args.profile,
        seeds=args.seeds,
        device=args.device,
        out=args.out,
        overrides=overrides,
        **executor,
        data_root=args.data_root,
        amp=args.amp,
        command=command,
    )
    with _progress() as progress:
        if args.until_decided:
            from normtheory.sequential import run_until_decided

            state = run_until_decided(
                study,
                max_seeds=args.max_seeds,
                step=args.seed_step,
                on_look=lambda s: print(s.line(), flush=True),
                progress=progress,
                **kw,
            )
            summary = state.summary
        else:
            summary = run_sweep(study, progress=progress, **kw)
    print(summary.line(study.name))
    if summary.failed:
        for error in summary.errors[:5]:
            print(f"  failed: {error}")
        print(
            f"{summary.failed} cell(s) failed (errors stored in their records, see "
            "normtheory.results.load_cells); rerun the same command to retry them"
        )
        return 1
    print(f"next: normtheory report {summary.path}")
    return 0


def _cores() -> int:
    """The CPU cores this process may use (all of them where the OS cannot say, e.g. macOS)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cmd_report(args, command: str) -> int:
    from normtheory.report import build_report, find_runs

    runs = [Path(r) for r in args.runs] or find_runs("runs")
    for run in runs:
        if run.is_file():
            raise ResultsError(
                f"{run} is a file, not a results folder (a run folder of `normtheory run`)"
            )
        if not run.is_dir():
            raise ResultsError(f"no results folder at {run}")
    workers = args.workers if args.workers is not None else min(8, _cores())
    index = build_report(
        runs, args.out, command=command, figures_only=args.figures_only, workers=workers
    )
    print(
        f"report: {index} ({len(runs)} run(s))"
        if not args.figures_only
        else f"figures: {Path(args.out) / 'figures'}"
    )
    return 0


def _cmd_verify(args, command: str) -> int:
    from rich.console import Console

    from normtheory.report.terminal import claims_table
    from normtheory.verify import verify

    done = verify(
        studies=None if args.studies is None else [s.strip() for s in args.studies.split(",") if s],
        skip_studies=args.skip_studies,
        reference=args.reference,
        runs=args.runs,
        out=args.out,
        device=args.device,
        data_root=args.data_root,
        amp=args.amp,
        command=command,
        progress=_progress,
        echo=lambda line: print(line, flush=True),
        **_executor_kwargs(args),
    )
    Console(width=None if sys.stdout.isatty() else 120).print(claims_table(done.claims))
    print(f"report: {done.index}")
    if done.failed_studies:
        print(
            f"studies with failed cells or not run: {', '.join(done.failed_studies)}",
            file=sys.stderr,
        )
    if done.failed_exact:
        print(f"exact claims that fail: {', '.join(done.failed_exact)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    try:
        # parse_known_args: key=value overrides may follow options (argparse stops a nargs="*"
        # positional at the first option), so leftovers of the form key=value are overrides.
        args, extra = parser.parse_known_args(argv)
        bad = [e for e in extra if args.command != "run" or e.startswith("-")]
        if bad:
            parser.error(f"unrecognized arguments: {' '.join(bad)}")
        if args.command == "run":
            args.overrides = [*args.overrides, *extra]
    except SystemExit as exit_:
        return int(exit_.code or 0)
    command = "normtheory " + shlex.join(argv)
    warnings.showwarning = _warn
    import matplotlib

    matplotlib.use("Agg")  # the CLI writes figures to files only; importing a study sets none
    try:
        if args.command == "list":
            return _cmd_list(args)
        if args.command == "run":
            return _cmd_run(args, command)
        if args.command == "verify":
            return _cmd_verify(args, command)
        return _cmd_report(args, command)
    except (ValueError, FileNotFoundError) as err:  # ResultsError is a ValueError
        return _fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
    except KeyboardInterrupt:
        return _fail("interrupted; complete cells are stored, rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
