"""Claim-level verdicts: a study's statistics judged by the claims' pre-registered tests.

A study reports *evidence* (`Sample`: one value per independent seed of a registered statistic;
`Exact`: the worst deviation of an identity; `CheckValue`: a manipulation check's value) and
`judge` applies the registry (`normtheory.claims`):

1. Manipulation checks first: a failed check makes the claim **not testable at this scale**.
2. Each row: a one-sided t-test of the claimed effect (``greater``/``less`` against `null`), a
   two-sided test (``two-sided``) or TOST (``equivalent``: within null ± SESOI); and the test of
   the opposite conclusion (the CI rules out every effect of SESOI size in the claimed
   direction; for ``two-sided``, TOST within ± SESOI). Both p-value families are Holm-adjusted
   across the claim's primary rows, per-condition rows included, so a reversal in one batch size
   is a refuted row of its own and cannot be averaged away.
   Row verdicts: supported; refuted (notes: ``reversal`` when significantly the other way,
   ``below SESOI`` when significant but smaller than the smallest effect of interest);
   inconclusive with what it rules out and its minimum detectable effect at 80 % power; and
   inconclusive (``underpowered``) with fewer independent seeds than the registry asks.
3. The claim's rule combines the primary rows: ``all`` (supported if every primary row is,
   refuted if any is) or ``any`` (supported if any is, refuted if all are).
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from normtheory.claims import Check, Claim, Statistic, get_claim
from normtheory.evidence import LEVEL, CheckValue, Evidence, Exact, Sample
from normtheory.stats import (
    EXACT,
    NOT_RUN,
    NOT_TESTABLE,
    Estimate,
    Verdict,
    exact,
    holm,
    mde,
    p_greater,
    p_less,
    p_tost,
    p_two_sided,
)
from normtheory.tuning import is_tuning


@dataclass
class ClaimVerdict:
    """One claim's verdict with the rows and checks behind it.

    Attributes:
        verdict: supported / refuted / inconclusive / not testable at this scale /
            exact-holds / exact-fails / not run.
        note: a qualifier (``underpowered``) shown after the verdict.
        reason: one sentence on why (failed check, refuted rows, missing statistics).
        rows: every row, primary first; `headline` is the primary row the verdict turned on.
        checks: (check, value, passed) for each registered check.
        n_seeds: the fewest independent seeds behind a primary row.
    """

    claim: str
    verdict: str
    reason: str = ""
    note: str = ""
    rows: list[Verdict] = field(default_factory=list)
    checks: list[tuple[Check, float, bool]] = field(default_factory=list)
    n_seeds: int = 0
    headline: Verdict | None = None

    @property
    def label(self) -> str:
        return f"{self.verdict} ({self.note})" if self.note else self.verdict


def _p_values(stat: Statistic, est: Estimate) -> tuple[float, float, float]:
    """(p of the claimed effect, p of the opposite conclusion, p of a reversal)."""
    null, s = stat.null, stat.sesoi
    if stat.direction == "greater":
        return p_greater(est, null), p_less(est, null + s), p_less(est, null)
    if stat.direction == "less":
        return p_less(est, null), p_greater(est, null - s), p_greater(est, null)
    if stat.direction == "two-sided":
        refute = p_tost(est, null - s, null + s) if s > 0 else math.nan
        return p_two_sided(est, null), refute, math.nan
    # equivalent: supported by TOST; refuted when significantly outside the margin
    outside = min(p_greater(est, null + s), p_less(est, null - s))
    return p_tost(est, null - s, null + s), min(1.0, 2 * outside), math.nan


def _power_text(stat: Statistic, est: Estimate, alpha: float) -> str:
    if not (math.isfinite(est.low) and math.isfinite(est.high)):
        return "no interval: too few seeds or zero spread"
    if stat.direction == "greater":
        bound = f"rules out effects above {est.high - stat.null:.3g}"
    elif stat.direction == "less":
        bound = f"rules out effects below {est.low - stat.null:.3g}"
    else:
        bound = f"rules out |effect| above {max(abs(est.low - stat.null), abs(est.high - stat.null)):.3g}"
    alt = "larger" if stat.direction in ("greater", "less") else "two-sided"
    sd = est.se * math.sqrt(est.n) if est.n else math.nan
    return (
        f"{bound}; minimum detectable effect at 80 % power {mde(sd, est.n, alpha=alpha, alternative=alt):.3g} "
        f"(n = {est.n}); SESOI {stat.sesoi:g}"
    )


def _row(claim: Claim, stat: Statistic, item: Sample) -> tuple:
    est = item.to_estimate()
    p_sup, p_ref, p_rev = _p_values(stat, est)
    text = stat.text + (f" [{stat.per} = {item.condition}]" if item.condition else "")
    row = Verdict(
        claim=claim.id,
        verdict="inconclusive",
        statistic=text,
        estimate=est.value,
        ci_low=est.low,
        ci_high=est.high,
        level=LEVEL,
        n_seeds=est.n,
        method=est.method,
        detail=item.detail,
        name=stat.name,
        condition=str(item.condition),
        primary=stat.primary,
        p_value=p_sup,
    )
    return row, est, p_sup, p_ref, p_rev


def _decide(
    row: Verdict, est: Estimate, stat: Statistic, p_sup, p_ref, p_rev, claim, looks
) -> Verdict:
    alpha, test = claim.test.alpha / looks, claim.test
    if row.n_seeds < test.min_seeds:
        note = f"underpowered: {row.n_seeds} < {test.min_seeds} seeds"
        return _replace(row, "inconclusive", note=note, p_adjusted=p_sup)
    sup, ref = p_sup < alpha, p_ref < alpha  # NaN compares False
    if sup and ref:
        return _replace(row, "refuted", note="below SESOI", p_adjusted=p_sup)
    if sup:
        return _replace(row, "supported", p_adjusted=p_sup)
    if ref:
        note = "reversal" if p_rev < alpha else ""
        return _replace(row, "refuted", note=note, p_adjusted=p_sup)
    return _replace(row, "inconclusive", power=_power_text(stat, est, alpha), p_adjusted=p_sup)


def _replace(row: Verdict, verdict: str, **kw) -> Verdict:
    return replace(row, verdict=verdict, **kw)


def judge_claim(claim_id: str, evidence: Iterable[Evidence], *, looks: int = 1) -> ClaimVerdict:
    """The claim-level verdict of `claim_id` from the evidence given for it (see module doc).
    `looks`: the planned number of sequential looks at the data (`normtheory.sequential`);
    every test is then at α/looks.

    Raises ValueError for a statistic or check the registry does not hold for the claim, or a
    per-condition statistic reported without its condition."""
    claim = get_claim(claim_id)
    test = claim.test
    items = [e for e in evidence if e.claim == claim_id]
    known = {s.name for s in test.statistics}
    raw, exact_rows, passed_rows, check_values = [], [], [], {}
    for item in items:
        if isinstance(item, CheckValue):
            if item.name not in {c.name for c in test.checks}:
                raise ValueError(
                    f"{claim_id}: check {item.name!r} is not registered; registered: "
                    f"{', '.join(c.name for c in test.checks) or '(none)'}"
                )
            check_values[item.name] = item.value
            continue
        if isinstance(item, Verdict):  # an already-decided exact row (normtheory verify)
            passed_rows.append(item)
            continue
        if item.name not in known:
            raise ValueError(
                f"{claim_id}: statistic {item.name!r} is not registered; registered: "
                f"{', '.join(sorted(known))}"
            )
        stat = test.statistic(item.name)
        if isinstance(item, Exact):
            if stat.direction != "exact":
                raise ValueError(
                    f"{claim_id}/{item.name} is registered {stat.direction}, not exact"
                )
            row = exact(
                claim_id, stat.text, item.value, stat.sesoi, n=item.n, detail=item.detail,
                name=stat.name,
            )  # fmt: skip
            # a secondary exact row (e.g. FRN-BATCH's batch_independence) is shown, not counted
            exact_rows.append(_replace(row, row.verdict, primary=stat.primary))
            continue
        if bool(stat.per) != bool(str(item.condition)):
            raise ValueError(
                f"{claim_id}/{item.name}: registered per {stat.per or '(no condition)'!r}, "
                f"reported with condition {item.condition!r}"
            )
        raw.append((stat, *_row(claim, stat, item)))
    # Holm across the primary rows, both families; secondary rows unadjusted.
    prim = [i for i, r in enumerate(raw) if r[0].primary]
    adj_sup = holm([raw[i][3] for i in prim])
    adj_ref = holm([raw[i][4] for i in prim])
    rows = []
    for i, (stat, row, est, p_sup, p_ref, p_rev) in enumerate(raw):
        if i in prim:
            k = prim.index(i)
            p_sup, p_ref = adj_sup[k], adj_ref[k]
        decided = _decide(row, est, stat, p_sup, p_ref, p_rev, claim, looks)
        rows.append(_replace(decided, decided.verdict, p_value=row.p_value))
    rows = exact_rows + passed_rows + rows
    rows.sort(key=lambda r: not r.primary)
    checks = [(c, check_values.get(c.name, math.nan), c.passes(check_values.get(c.name, math.nan)))
              for c in test.checks]  # fmt: skip
    out = _combine(claim, rows, checks, check_values)
    if looks > 1 and claim.kind != "exact":
        out.reason += (
            f" (sequential: each test at α = {claim.test.alpha:g}/{looks}, {looks} planned looks)"
        )
    return out


def _combine(claim: Claim, rows, checks, check_values) -> ClaimVerdict:
    test = claim.test
    primary = [r for r in rows if r.primary]
    out = ClaimVerdict(claim.id, NOT_RUN, rows=rows, checks=checks)
    out.n_seeds = min((r.n_seeds for r in primary), default=0)
    if not rows:
        out.reason = "no statistic reported"
        return out
    exacts = [r for r in primary if r.verdict in EXACT]
    if claim.kind == "exact":
        if not exacts:
            out.reason = "no exact check reported"
            return out
        failed = [r for r in exacts if r.verdict == EXACT[1]]
        out.verdict = EXACT[1] if failed else EXACT[0]
        out.headline = (failed or exacts)[0]
        out.reason = (
            f"fails: {'; '.join(r.statistic for r in failed)}"
            if failed
            else f"{len(exacts)} exact check(s) within tolerance"
        )
        return out
    missing_checks = [c.name for c, _, _ in checks if c.name not in check_values]
    failed = [(c, v) for c, v, ok in checks if not ok and c.name in check_values]
    if failed:
        out.verdict = NOT_TESTABLE
        out.reason = "failed check: " + "; ".join(
            f"{c.text} (measured {v:.3g}, needs {c.op} {c.threshold:g})" for c, v in failed
        )
        needed = [c.scale_needed for c, _ in failed if c.scale_needed] or [claim.scale_needed]
        needed = [n for n in dict.fromkeys(needed) if n]
        if needed:
            out.reason += f". Would need: {'; '.join(needed)}"
        return out
    if missing_checks:
        out.reason = f"manipulation check(s) not reported: {', '.join(missing_checks)}"
        return out
    reported = {r.name for r in primary}
    missing = [s.name for s in test.primary if s.name not in reported]
    if missing:
        out.reason = f"primary statistic(s) not reported: {', '.join(missing)}"
        return out
    words = [r.verdict for r in primary]
    refuted = [r for r in primary if r.verdict == "refuted"]
    supported = [r for r in primary if r.verdict == "supported"]
    under = [r for r in primary if r.note.startswith("underpowered")]
    if test.rule == "all":
        if refuted:
            out.verdict, out.headline = "refuted", refuted[0]
        elif len(supported) == len(primary):
            out.verdict, out.headline = "supported", primary[0]
        else:
            out.verdict = "inconclusive"
            out.headline = next(r for r in primary if r.verdict == "inconclusive")
    else:
        if supported:
            out.verdict, out.headline = "supported", supported[0]
        elif len(refuted) == len(primary):
            out.verdict, out.headline = "refuted", primary[0]
        else:
            out.verdict = "inconclusive"
            out.headline = next(r for r in primary if r.verdict == "inconclusive")
    if out.verdict == "inconclusive" and under:
        out.note = "underpowered"
    reversals = [r for r in primary if r.note == "reversal"]
    counts = ", ".join(f"{words.count(w)} {w}" for w in dict.fromkeys(words))
    out.reason = f"rule {test.rule} over {len(primary)} primary row(s): {counts}"
    if reversals:
        out.reason += "; reversal: " + ", ".join(
            f"{r.name} at {r.condition}" if r.condition else r.name for r in reversals
        )
    return out


def judge(
    evidence: Iterable[Evidence], claim_ids: Iterable[str] | None = None, *, looks: int = 1
) -> dict[str, ClaimVerdict]:
    """claim id -> `ClaimVerdict` for `claim_ids` (default: every claim the evidence names)."""
    evidence = list(evidence)
    ids = list(dict.fromkeys(claim_ids if claim_ids is not None else (e.claim for e in evidence)))
    return {c: judge_claim(c, evidence, looks=looks) for c in ids}


def judge_study(study, results) -> dict[str, ClaimVerdict]:
    """The verdict of every claim `study` declares, from `study.statistics(results)`, at the
    α of the run's planned sequential looks (1 unless it ran with ``--until-decided``).
    A tuning run (cells evaluated on a validation split) chooses learning rates and decides
    nothing: no verdicts, whatever its errors, and the study's statistics are not asked."""
    if is_tuning(results.cells):
        return {}
    looks = int(results.manifest.get("sequential", {}).get("looks_planned", 1) or 1)
    return judge(study.statistics(results), study.claims, looks=looks)
