"""The report's tables: one row per claim (the claim-level verdict of the registry's test, every
claim of the registry, "not run" where no stored run tested it), one row per statistic (each
study's section), the legend of the verdict words, and each run's metadata."""

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from normtheory.claims import CLAIMS, Claim, registered_at
from normtheory.stats import EXACT, NOT_RUN, NOT_TESTABLE, Verdict
from normtheory.verdicts import ClaimVerdict

LEGEND = {
    "supported": "every primary statistic shows the claimed effect: its one-sided test (or TOST, "
    "for a claim of equivalence) is significant at 5 % after Holm's correction across the claim's "
    "rows",
    "refuted": "a primary statistic rules out the claimed effect: significantly the other way "
    "(reversal), or its CI excludes every effect as large as the smallest effect of interest",
    "inconclusive": "neither; the row states what effect sizes its CI rules out and the minimum "
    "detectable effect at 80 % power. (underpowered): fewer independent seeds than registered",
    NOT_TESTABLE: "a registered manipulation check failed (the nets did not train, or the cause "
    "of the phenomenon is absent at this scale); the row names the check and the scale needed",
    "exact-holds": "an identity, checked to floating-point precision (or, for IC-CORR/IC-MI, to "
    "4 standard errors of its sampled estimate): the measured error is within the tolerance",
    "exact-fails": "the identity's measured error exceeds the tolerance",
    NOT_RUN: "no stored result tests the claim (the row names the command that would), or the "
    "run's results were missing or its statistics failed",
}
TIERS = {"paper": 3, "standard": 2, "quick": 0}  # a run's tier → rank (higher wins)
_LEGACY = {"full": 1}  # within a tier, a run of a profile named "full" beats one named "quick"


@dataclass
class Section:
    """One run in the report: its study, claim verdicts, figures and metadata.

    Attributes:
        claim_verdicts: claim -> `ClaimVerdict` judged from this run alone.
        figures: figure stems (``<run>-<name>``), drawn as ``figures/<stem>.png``.
        figure_texts: stem -> the figure's titles, to link a claim to the figure naming it.
        figure_data: stems whose data table was written to ``results/<stem>.csv``.
        expected, complete: cells × seeds of the run's grid, and those stored complete.
        measured: the generated sentence saying what was measured.
        written: the files this section wrote, relative to the report folder.
    """

    run: Path
    study_name: str
    title: str
    description: str
    manifest: dict
    claim_verdicts: dict[str, ClaimVerdict] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    figure_texts: dict[str, str] = field(default_factory=dict)
    figure_data: set[str] = field(default_factory=set)
    cells: pd.DataFrame | None = None
    error: str = ""
    expected: int = 0
    complete: int = 0
    measured: str = ""
    written: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return self.complete < self.expected

    @property
    def anchor(self) -> str:
        return f"run-{self.run.name}"

    @property
    def verdicts(self) -> list[Verdict]:
        """Every statistic row of every claim of this run."""
        return [r for cv in self.claim_verdicts.values() for r in cv.rows]

    @property
    def tier_name(self) -> str:
        """The run's tier: the manifest's (written by `run_sweep` from the profile), else the
        profile's name when it is a tier, else ``quick`` (`normtheory.study.profile_tier`)."""
        name = self.manifest.get("profile", "")
        return self.manifest.get("tier") or (name if name in TIERS else "quick")

    @property
    def tier(self) -> tuple[int, int]:
        """Rank of the run: its tier's, then a profile named ``full`` above one named ``quick``."""
        return TIERS.get(self.tier_name, -1), _LEGACY.get(self.manifest.get("profile", ""), 0)


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def estimate_text(v: Verdict | None) -> str:
    """``est [low, high]``; exact verdicts and rows without an interval show the value only."""
    if v is None or v.verdict == NOT_RUN:
        return "–"
    if v.verdict in EXACT or not (math.isfinite(v.ci_low) and math.isfinite(v.ci_high)):
        return fmt(v.estimate)
    return f"{fmt(v.estimate)} [{fmt(v.ci_low)}, {fmt(v.ci_high)}]"


def _figure_for(claim: str, sec: Section) -> str:
    named = [f for f in sec.figures if claim in sec.figure_texts.get(f, "")]
    return (named or sec.figures or [""])[0]


def _scale(sec: Section) -> str:
    """This run's scale: dataset, model parameters, steps, independent seeds."""
    cells = sec.cells
    if cells is None or not len(cells):
        return "–"
    parts = []
    if "dataset" in cells:
        parts.append("/".join(sorted(map(str, cells["dataset"].dropna().unique()))))
    if "final_n_params" in cells:
        n = pd.to_numeric(cells["final_n_params"], errors="coerce").dropna()
        if len(n):
            lo, hi = int(n.min()), int(n.max())
            parts.append(f"{lo:,}" + (f"–{hi:,}" if hi != lo else "") + " params")
    if "steps_done" in cells:
        s = pd.to_numeric(cells["steps_done"], errors="coerce").dropna()
        if len(s) and s.max() > 0:
            lo, hi = int(s.min()), int(s.max())
            parts.append(f"{lo}" + (f"–{hi}" if hi != lo else "") + " steps")
    parts.append(f"{cells['seed'].nunique()} seeds")
    return ", ".join(parts)


def _effects(claim: Claim, head: Verdict | None) -> str:
    """The paper's effect next to ours, in the headline statistic's units."""
    if head is None or head.verdict in EXACT or not math.isfinite(head.estimate):
        return ""
    here = f"here {head.estimate:+.3g}"
    if claim.paper_effect is None:
        return here
    return f"paper {claim.paper_effect:+.3g}, {here}"


def _test_status(claim: Claim, sec: Section | None) -> str:
    """The test's hash and the commit it was last changed at; flags a run made under an older
    test (or before the registry existed)."""
    changed = registered_at().get(claim.id, "")
    text = f"test {claim.digest}" + (f" (registered at {changed})" if changed else "")
    if sec is None:
        return text
    ran = sec.manifest.get("tests", {}).get(claim.id)
    if ran is None:
        return text + f"; test registered after this run ({sec.run.name}): rerun to confirm"
    if ran != claim.digest:
        return text + f"; test changed at {changed or 'a later commit'} after this run: rerun"
    return text


def _decider(claim: Claim, sections: list[Section]) -> tuple[Section | None, ClaimVerdict | None]:
    """The section whose verdict stands for the claim: among its registered study's runs (else
    any run that judged it), one that reached a verdict, complete, of the highest tier, latest."""
    having = [s for s in sections if claim.id in s.claim_verdicts]
    own = [s for s in having if s.study_name == claim.study] or having
    if not own:
        return None, None
    best = max(
        own,
        key=lambda s: (
            s.claim_verdicts[claim.id].verdict != NOT_RUN,  # a run that judged it
            not s.partial,
            s.tier,
            s.manifest.get("finished_at") or "",
        ),
    )
    return best, best.claim_verdicts[claim.id]


def _exact_verdict(claim: Claim, sections: list[Section]) -> tuple[Section | None, ClaimVerdict]:
    """An exact claim holds when every exact row of every run holds."""
    having = [s for s in sections if claim.id in s.claim_verdicts]
    rows = [(s, r) for s in having for r in s.claim_verdicts[claim.id].rows if r.verdict in EXACT]
    if not rows:
        return _decider(claim, sections)
    failed = [(s, r) for s, r in rows if r.verdict == EXACT[1]]
    sec, head = (failed or sorted(rows, key=lambda x: x[0].study_name != claim.study))[0]
    runs = sorted({s.run.name for s, _ in rows})
    out = ClaimVerdict(claim.id, EXACT[1] if failed else EXACT[0], headline=head)
    out.reason = (
        f"fails: {'; '.join(r.statistic for _, r in failed)}"
        if failed
        else f"{len(rows)} exact check(s) within tolerance in {', '.join(runs)}"
    )
    out.n_seeds = max(r.n_seeds for _, r in rows)
    return sec, out


def _secondary(claim: Claim, sections: list[Section]) -> str:
    """For an exact claim: its sampled secondary rows (e.g. the same relation measured inside
    trained nets), each with its own verdict, so they show next to the exact one."""
    rows = [
        (s, r)
        for s in sections
        if claim.id in s.claim_verdicts
        for r in s.claim_verdicts[claim.id].rows
        if not r.primary and r.verdict not in (*EXACT, NOT_RUN)
    ]
    parts = [
        f"`{r.name or r.statistic}` {estimate_text(r)} → {r.verdict}"
        + (f" ({r.note})" if r.note else "")
        + f" ({s.study_name}, run {s.run.name})"
        for s, r in rows
    ]
    return "secondary, not in the rule: " + "; ".join(parts) if parts else ""


def _other_tiers(claim: Claim, sections: list[Section], decider: Section | None) -> str:
    """The verdicts of the claim's other runs of another tier than the deciding one (e.g. the
    quick run under a standard verdict), so a verdict that changes with scale shows it."""
    if decider is None:
        return ""
    parts = []
    for s in sections:
        cv = s.claim_verdicts.get(claim.id)
        if s is decider or cv is None or cv.verdict == NOT_RUN or s.tier_name == decider.tier_name:
            continue
        head = f" {estimate_text(cv.headline)}" if cv.headline is not None else ""
        parts.append(f"{s.tier_name} ({s.run.name}): {cv.verdict}{head}")
    return "other tiers: " + "; ".join(parts) if parts else ""


def claim_rows(sections: list[Section], testers: dict[str, list[str]]) -> list[dict]:
    """One row per claim of the registry, in its order: the claim-level verdict, the headline
    statistic with its CI, the paper's effect next to ours, this run's scale and the test's
    status (`testers`: claim -> commands that would test it, for "not run" rows)."""
    out = []
    for cid, claim in CLAIMS.items():
        if claim.kind == "exact":
            sec, cv = _exact_verdict(claim, sections)
        else:
            sec, cv = _decider(claim, sections)
        how = " or ".join(f"`{c}`" for c in testers.get(cid, [])) or "no study tests it yet"
        if cv is None:
            cv = ClaimVerdict(cid, NOT_RUN, reason=f"not run: {how}")
        elif cv.verdict == NOT_RUN:
            cv.reason = f"{cv.reason}; run {how}" if cv.reason else f"not run: {how}"
        reason = cv.reason  # the runs' own verdict objects are left as they are
        extra = _secondary(claim, sections) if claim.kind == "exact" else ""
        extra = extra or (_other_tiers(claim, sections, sec) if claim.kind != "exact" else "")
        if sec is not None and (changes := sec.manifest.get("protocol_changes")):
            revised = "protocol changed after results were seen: " + "; ".join(changes)
            extra = f"{revised}. {extra}" if extra else revised
        if extra:
            reason = f"{reason}. {extra}" if reason else extra
        head = cv.headline
        out.append(
            {
                "claim": cid,
                "statement": claim.statement,
                "source": claim.source,
                "setting": claim.setting,
                "paper": claim.paper,
                "verdict": cv.verdict,
                "note": cv.note,
                "label": cv.label,
                "reason": reason,
                "statistic": head.statistic if head is not None else "",
                "estimate": estimate_text(head),
                "value": head.estimate if head is not None else math.nan,
                "ci_low": head.ci_low if head is not None else math.nan,
                "ci_high": head.ci_high if head is not None else math.nan,
                "power": head.power if head is not None else "",
                "effect": _effects(claim, head),
                "seeds": cv.n_seeds,
                "scale": _scale(sec) if sec is not None else "–",
                "profile": sec.manifest.get("profile", "?") if sec is not None else "–",
                "tier": sec.tier_name if sec is not None else "–",
                "run": sec.run.name if sec is not None else "",
                "test": _test_status(claim, sec),
                "figure": _figure_for(cid, sec) if sec is not None else "",
            }
        )
    return out


ROW_COLUMNS = ["claim", "run", "profile", "name", "condition", "primary", "verdict", "note",
               "label", "statistic", "estimate_text", "estimate", "ci_low", "ci_high", "n_seeds",
               "p_value", "p_adjusted", "power", "detail"]  # fmt: skip


def statistic_rows(sections: list[Section]) -> list[dict]:
    """One row per statistic of every section (the per-study tables and ``rows.csv``)."""
    rows = []
    for sec in sections:
        for cv in sec.claim_verdicts.values():
            for v in cv.rows:
                rows.append(
                    {
                        "claim": v.claim,
                        "run": sec.run.name,
                        "profile": sec.manifest.get("profile", "?"),
                        "name": v.name,
                        "condition": v.condition,
                        "primary": v.primary,
                        "verdict": v.verdict,
                        "note": v.note,
                        "label": v.label,
                        "statistic": v.statistic,
                        "estimate_text": estimate_text(v),
                        "estimate": v.estimate,
                        "ci_low": v.ci_low,
                        "ci_high": v.ci_high,
                        "n_seeds": v.n_seeds,
                        "p_value": v.p_value,
                        "p_adjusted": v.p_adjusted,
                        "power": v.power,
                        "detail": v.detail,
                    }
                )
    return rows


def _speed(cells: pd.DataFrame | None) -> str | None:
    """Training speed of the stored runs: total steps over total loop seconds, and the range of
    the runs' own steps/s (runs stored before steps/s was recorded are left out)."""
    if cells is None or "steps_per_s" not in cells or "steps_done" not in cells:
        return None
    rate = pd.to_numeric(cells["steps_per_s"], errors="coerce")
    steps = pd.to_numeric(cells["steps_done"], errors="coerce")
    ok = (rate > 0) & (steps > 0) & rate.notna() & steps.notna()
    if not ok.any():
        return None
    total = float(steps[ok].sum() / (steps[ok] / rate[ok]).sum())
    lo, hi = float(rate[ok].min()), float(rate[ok].max())
    return f"{total:.1f} over {int(ok.sum())} runs (each {lo:.1f}–{hi:.1f})"


def _accuracy_reached(cells: pd.DataFrame | None) -> str | None:
    """The range over the run's cells of their mean final test accuracy over seeds (completed
    runs only), with the lowest and highest cell named: how far the run's nets trained."""
    if cells is None or not {"cell", "status", "final_test_acc"} <= set(cells.columns):
        return None
    done = cells[cells["status"] == "completed"]
    acc = pd.to_numeric(done["final_test_acc"], errors="coerce").groupby(done["cell"]).mean()
    acc = acc.dropna()
    if acc.empty:
        return None
    lo, hi = acc.idxmin(), acc.idxmax()
    if len(acc) == 1:
        return f"{acc[lo]:.3f} (mean over the completed seeds)"
    return (f"{acc[lo]:.3f} ({lo}) to {acc[hi]:.3f} ({hi}), means over the completed seeds of "
            f"{len(acc)} cells")  # fmt: skip


def meta(sec: Section) -> dict:
    """The run metadata shown under each section."""
    m, cells = sec.manifest, sec.cells
    versions = m.get("versions", {})
    if cells is not None and "wall_time" in cells:
        wall = float(pd.to_numeric(cells["wall_time"], errors="coerce").fillna(0).sum())
    else:
        wall = float(m.get("wall_time", math.nan) or math.nan)
    counts = cells["status"].value_counts().to_dict() if cells is not None and len(cells) else {}
    out = {
        "commit": m.get("git_commit", "?"),
        "python": versions.get("python", "?"),
        "torch": versions.get("torch", "?"),
        "device": m.get("device", "?"),
        "profile": f"{m.get('profile', '?')} (tier {sec.tier_name})",
    }
    if m.get("amp", "off") != "off":
        out["amp"] = m["amp"]
    if cells is not None:
        n_seeds = int(m.get("config", {}).get("seeds", 0) or 0)
        n_cells = len(m.get("config", {}).get("cells", []))
        out["runs"] = (
            f"{sec.complete} of {sec.expected} complete ({n_cells} cells × {n_seeds} seeds)"
            + (f": {', '.join(f'{v} {k}' for k, v in counts.items())}" if counts else "")
        )
    out["wall time"] = f"{wall:.1f} s" + (" (training)" if cells is not None else "")
    if (reached := _accuracy_reached(cells)) is not None:
        out["test accuracy"] = reached
    if (speed := _speed(cells)) is not None:
        out["steps/s"] = speed
    if m.get("protocol_changes"):
        out["protocol changed after results"] = "; ".join(m["protocol_changes"])
    out["started"] = m.get("started_at", "–")
    out["finished"] = m.get("finished_at", "not finished")
    out["command"] = m.get("command") or "–"
    return out
