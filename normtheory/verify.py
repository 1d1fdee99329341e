"""``normtheory verify``: the exact checks, every study's quick profile and the report, in one go;
with ``reference``, every study's reference profiles (`Study.reference`: quick, and standard where
the claims need real data) — the committed reference report.

The exact checks are the ordinary ``exact_checks`` study (seconds); the other studies follow
(their complete cells are reused, so a second ``verify`` is fast); the report covers exactly the
runs this call made, never other runs lying in the same folder.
"""

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from normtheory.amp import check_amp
from normtheory.registry import list_studies, load_study
from normtheory.report import build_report
from normtheory.sweep import run_sweep
from normtheory.train import resolve_device

EXACT_STUDY = "exact_checks"


@dataclass
class Verified:
    """What `verify` did: the report's index, its claims table, the runs made, and the studies
    with failed cells (or not run) and the exact claims that fail."""

    index: Path
    claims: pd.DataFrame
    runs: list[Path] = field(default_factory=list)
    failed_studies: list[str] = field(default_factory=list)

    @property
    def failed_exact(self) -> list[str]:
        table = self.claims
        return sorted(set(table.loc[table["verdict"] == "exact-fails", "claim"]))


def verify(
    *,
    studies: list[str] | None = None,
    skip_studies: bool = False,
    reference: bool = False,
    runs: str | Path = "runs",
    out: str | Path = "reports",
    device: str = "auto",
    data_root: str | Path | None = None,
    amp: str = "off",
    command: str = "",
    progress: Callable | None = None,
    echo: Callable[[str], None] = print,
    **executor,
) -> Verified:
    """Runs the exact checks and (unless `skip_studies`) the quick profile of `studies` (default:
    all) into ``runs/<study>-quick`` — with `reference`, each study's `Study.reference_profiles`
    into ``runs/<study>-<profile>`` — then the report of those runs into `out`.

    `executor`: `run_sweep`'s executor arguments; `data_root`: the folder of the local
    datasets (`run_sweep`'s); `amp`: mixed precision of the studies' training (not of the exact
    checks); `progress`: a factory of rich progress contexts (or None);
    `echo`: where the one-line summaries go. Unknown studies raise ValueError naming the known
    ones; a study whose data is missing is "not run" (named, with the missing files)."""
    check_amp(amp, resolve_device(device))  # one line before anything runs
    known = list_studies()
    names = [n for n in (known if studies is None else studies) if n != EXACT_STUDY]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown study {unknown[0]!r}; known studies: {', '.join(known)}")
    plan = [
        (name, profile)
        for name in [EXACT_STUDY] + ([] if skip_studies else names)
        for profile in (load_study(name).reference_profiles if reference else ("quick",))
    ]
    made, failed = [], []
    for name, profile in plan:
        out_dir = Path(runs) / f"{name}-{profile}"
        try:
            with progress() if progress else nullcontext() as bar:
                summary = run_sweep(
                    load_study(name),
                    profile=profile,
                    device="cpu" if name == EXACT_STUDY else device,
                    out=out_dir,
                    data_root=data_root,
                    amp="off" if name == EXACT_STUDY else amp,
                    progress=bar,
                    command=command,
                    **executor,
                )
        except (ValueError, FileNotFoundError) as err:  # another config, missing data: go on
            echo(f"{name} [{profile}]: not run: {err}")
            failed.append(name)
            continue
        made.append(out_dir)
        echo(
            f"{name} [{profile}]: {summary.completed} completed, {summary.skipped} reused, "
            f"{summary.diverged} diverged, {summary.failed} failed"
        )
        if summary.failed:
            failed.append(name)
    index = build_report(made, out, command=command)
    claims = pd.read_csv(index.parent / "results" / "claims.csv", keep_default_na=False)
    return Verified(index, claims, made, failed)
