"""Speedup of ``--executor process --workers 2`` over ``--executor local`` on one quick study.

Run: ``python bench/executors.py [--study batch_size] [--profile quick] [--seeds N]
[--workers 2] [--repeats 1] [--local-threads-2] [key=value ...]``. Issue 8 asks for the ratio on
the 2-core machine, measured in one session: this runs the same study through the CLI
(`normtheory.cli.main`) under both executors, side by side, into fresh temp folders, alternating
which runs first, and prints the wall times, the ratio local / process (median over repeats) and
whether the stored values are bit-identical (they must be: same seeds, 1 torch thread per cell).
The pool costs a few seconds to start (each worker imports torch and the study), so a study of
a few seconds (``--study scale_invariance``: 12 cells of ~0.5 s) is slower in a pool; the
default ``batch_size`` quick study (minutes) is the size the pool is for.

``--local-threads-2`` adds a reference arm: local with 2 torch threads per cell, the other way
to use both cores (timing only; its numbers may differ in the last bits).
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from normtheory.cli import main as cli
from normtheory.results import load


def _run(study: str, profile: str, out: Path, extra: list[str]) -> float:
    started = time.perf_counter()
    code = cli(["run", study, "--profile", profile, "--device", "cpu", "--out", str(out), *extra])
    if code != 0:
        raise SystemExit(f"normtheory run exited with {code} ({' '.join(extra)})")
    return time.perf_counter() - started


def _values(path: Path):
    frame = load(path).drop(columns=["run"])
    return frame.sort_values(["cell", "seed", "step", "metric", "key"]).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.add_argument("--study", default="batch_size")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--local-threads-2", action="store_true")
    args = parser.parse_args()
    common = [*args.overrides, *(["--seeds", str(args.seeds)] if args.seeds else [])]
    arms = {
        "local": ["--executor", "local", "--threads", "1"],
        f"process x{args.workers}": ["--executor", "process", "--workers", str(args.workers)],
    }
    if args.local_threads_2:
        arms["local, 2 threads"] = ["--executor", "local", "--threads", "2"]
    times: dict[str, list[float]] = {name: [] for name in arms}
    identical = True
    with tempfile.TemporaryDirectory(prefix="bench-executors-") as tmp:
        for repeat in range(args.repeats):
            order = list(arms) if repeat % 2 == 0 else list(reversed(arms))
            outs = {}
            for name in order:
                outs[name] = Path(tmp) / f"{repeat}-{name.replace(' ', '_').replace(',', '')}"
                times[name].append(
                    _run(args.study, args.profile, outs[name], [*arms[name], *common])
                )
                print(f"repeat {repeat}: {name:18s} {times[name][-1]:7.1f} s", flush=True)
            reference = _values(outs["local"])
            identical &= _values(outs[f"process x{args.workers}"]).equals(reference)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"\n{args.study} [{args.profile}] {' '.join(common)}: median wall time over {args.repeats}"
    )
    for name, t in median.items():
        print(f"  {name:18s} {t:7.1f} s   speedup over local: {median['local'] / t:.2f}x")
    print(f"stored values identical (local vs process): {identical}")


if __name__ == "__main__":
    main()
