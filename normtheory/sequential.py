"""Adding seeds until a study's claims are decided (``normtheory run NAME --until-decided``).

The sweep runs the profile's seeds, the registry judges the claims, and while a claim of the
study is still inconclusive and fewer than `max_seeds` seeds are stored, `step` more seeds are
run into the same folder (every stored cell is reused: adding seeds is not a different config).

Looking at the data after every batch of seeds inflates the false-positive rate, so the test is
corrected for the planned number of looks K = 1 + ⌈(max_seeds − start) / step⌉: every look
tests at α/K (Bonferroni over looks — conservative, valid for any stopping rule). The run's
manifest records K (``sequential.looks_planned``) and the looks made; the report judges such a
run at α/K and says so.
"""

import math
from dataclasses import dataclass, field

from normtheory.results import Results, RunDir
from normtheory.stats import NOT_RUN
from normtheory.sweep import RunSummary, run_sweep
from normtheory.verdicts import judge_study

DECIDED = ("supported", "refuted", "not testable at this scale", "exact-holds", "exact-fails")


@dataclass
class SequentialSummary:
    """The last sweep's summary, the seeds run, the looks made and planned, the verdicts."""

    summary: RunSummary
    seeds: int
    looks: int
    looks_planned: int
    verdicts: dict = field(default_factory=dict)

    def line(self) -> str:
        words = ", ".join(f"{c} {v.label}" for c, v in self.verdicts.items())
        return (
            f"until decided: {self.seeds} seeds after {self.looks} look(s) of "
            f"{self.looks_planned} planned (each at α/{self.looks_planned}): {words}"
        )


def planned_looks(start: int, max_seeds: int, step: int) -> int:
    """K = 1 + ⌈(max_seeds − start) / step⌉ looks (1 when start ≥ max_seeds)."""
    return 1 + max(0, math.ceil((max_seeds - start) / step))


def run_until_decided(
    study,
    *,
    profile: str | None = None,
    seeds: int | None = None,
    max_seeds: int = 20,
    step: int = 2,
    on_look=None,
    **sweep_kw,
) -> SequentialSummary:
    """Runs `study` with more and more seeds until each of its claims is decided (see the
    module docstring). `sweep_kw` go to `run_sweep` (device, out, overrides, executor, ...);
    `on_look(SequentialSummary)` is called after every look."""
    profile = study.default_profile if profile is None else profile
    start = seeds if seeds is not None else study.profile(profile).seeds
    if step < 1:
        raise ValueError(f"--seed-step must be ≥ 1, got {step}")
    if max_seeds < start:
        raise ValueError(f"--max-seeds {max_seeds} is below the starting {start} seeds")
    k = planned_looks(start, max_seeds, step)
    n, looks = start, 0
    while True:
        summary = run_sweep(study, profile=profile, seeds=n, **sweep_kw)
        looks += 1
        run = RunDir(summary.path)
        run.update_manifest(
            sequential={"looks_planned": k, "looks": looks, "step": step, "max_seeds": max_seeds}
        )
        verdicts = judge_study(study, Results.load(summary.path))
        state = SequentialSummary(summary, n, looks, k, verdicts)
        if on_look is not None:
            on_look(state)
        open_claims = [c for c, v in verdicts.items() if v.verdict not in (*DECIDED, NOT_RUN)]
        if not open_claims or n >= max_seeds:
            return state
        n = min(max_seeds, n + step)
