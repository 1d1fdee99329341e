"""Claim-level verdicts from the registry's tests, on known answers; each audit defect of the
first report has a regression test here."""

import math

import numpy as np
import pandas as pd
import pytest

from normtheory.evidence import CheckValue, Exact, Sample, sample
from normtheory.stats import exact
from normtheory.verdicts import judge, judge_claim


def _values(mean, sd=0.01, n=6, seed=0):
    """n values with exactly this mean and sample sd (a standardized random pattern)."""
    z = np.random.default_rng(seed).standard_normal(n)
    z = (z - z.mean()) / z.std(ddof=1)
    return pd.Series(mean + sd * z, index=range(n))


def _gn_batch(bn_rise, gn_rise, *, n=6, trained=0.95, penalty=None, sd=0.01):
    bn, gn = _values(bn_rise, sd=sd, n=n), _values(gn_rise, sd=sd, n=n, seed=1)
    return [
        sample("GN-BATCH", "bn_rise", bn),
        sample("GN-BATCH", "gn_rise", gn),
        CheckValue("GN-BATCH", "bn_trained", trained),
        CheckValue("GN-BATCH", "bn_penalty", bn.mean() if penalty is None else penalty),
    ]


def test_two_part_claim_needs_both_parts():
    """Audit regression: GN-BATCH read "supported" because GN *improved* at small batch while
    BN's own rise was −0.009 (inconclusive). Both registered parts must hold now."""
    assert judge_claim("GN-BATCH", _gn_batch(0.10, 0.0)).verdict == "supported"
    # GN improves a lot at small batch (not flat), BN rises: the "GN stays flat" part fails
    v = judge_claim("GN-BATCH", _gn_batch(0.10, -0.08))
    assert v.verdict == "refuted"
    assert [r.verdict for r in v.rows] == ["supported", "refuted"]


def test_phenomenon_absent_is_not_testable():
    """Audit regression: GN-BATCH at a scale where BN barely suffers at batch 2 (4.6 % error)
    got supported/refuted; with BN's small-batch penalty below the registered check it is
    "not testable at this scale", naming the check and the scale that would show it."""
    v = judge_claim("GN-BATCH", _gn_batch(-0.009, -0.05, penalty=-0.009))
    assert v.verdict == "not testable at this scale"
    assert "2 points" in v.reason and "Would need" in v.reason
    untrained = judge_claim("GN-BATCH", _gn_batch(0.10, 0.0, trained=0.5))
    assert untrained.verdict == "not testable at this scale" and "85 %" in untrained.reason
    singular = [
        *(sample("WS-SINGULAR", s, _values(0.1)) for s in ("statdiff_gn", "statdiff_ln")),
        *(sample("WS-SINGULAR", s, _values(0.1)) for s in ("drift_gn", "drift_ln")),
        CheckValue("WS-SINGULAR", "dead_channels", 0.0),
    ]
    assert judge_claim("WS-SINGULAR", singular).verdict == "not testable at this scale"


def _wrs(wd_removes, wd_trained):
    return [
        *(
            sample("WRS", s, _values(m, seed=i), condition="sgd")
            for i, (s, m) in enumerate(
                [("log_orth_ratio", -0.5), ("orth_vs_wd", 0.0), ("acc_vs_wd", 0.0)]
            )
        ),
        CheckValue("WRS", "wd_removes", wd_removes),
        CheckValue("WRS", "wd_trained", wd_trained),
    ]


def test_not_testable_names_what_the_failed_check_needs():
    """Review regression: WRS failed its accuracy check while "Would need" spoke of the
    orthogonal-norm check. The failed check's own scale_needed is shown when it has one."""
    from normtheory.claims import CLAIMS

    checks = {c.name: c for c in CLAIMS["WRS"].test.checks}
    untrained = judge_claim("WRS", _wrs(wd_removes=-0.5, wd_trained=0.75))
    assert untrained.verdict == "not testable at this scale"
    assert checks["wd_trained"].scale_needed in untrained.reason
    assert CLAIMS["WRS"].scale_needed not in untrained.reason
    no_effect = judge_claim("WRS", _wrs(wd_removes=-0.01, wd_trained=0.9))
    assert CLAIMS["WRS"].scale_needed in no_effect.reason
    both = judge_claim("WRS", _wrs(wd_removes=-0.01, wd_trained=0.75)).reason
    assert checks["wd_trained"].scale_needed in both and "85 %" in both


def _bgn(vs_bn: dict, vs_gn: float = 0.05, pooled=True):
    ev = [
        sample("BGN-TINY", "vs_bn", _values(m, seed=b), condition=str(b)) for b, m in vs_bn.items()
    ]
    ev += [
        sample("BGN-TINY", "vs_gn", _values(vs_gn, seed=10 + b), condition=str(b)) for b in vs_bn
    ]
    if pooled:
        per_seed = pd.concat([e.values for e in ev[: len(vs_bn)]], axis=1).mean(axis=1)
        ev.append(sample("BGN-TINY", "vs_bn_pooled", per_seed))
    return [*ev, CheckValue("BGN-TINY", "bn_trained", 0.95)]


def test_pooled_mean_cannot_hide_a_reversal():
    """Audit regression: BGN-TINY was "supported" by a mean over batch 1–8 carried by batch 1
    alone while BGN was significantly worse than BN at batch 4 and 8. Per-batch-size rows are
    primary; the reversals refute the claim and are named, whatever the pooled row says."""
    v = judge_claim("BGN-TINY", _bgn({1: 0.6, 2: 0.05, 4: -0.13, 8: -0.19}))
    pooled = next(r for r in v.rows if r.name == "vs_bn_pooled")
    assert pooled.verdict == "supported" and not pooled.primary  # the mean still looks good
    assert v.verdict == "refuted"
    assert "reversal" in v.reason and "vs_bn at 4" in v.reason and "vs_bn at 8" in v.reason
    assert {r.condition for r in v.rows if r.note == "reversal"} == {"4", "8"}
    assert judge_claim("BGN-TINY", _bgn({1: 0.6, 2: 0.05, 4: 0.05, 8: 0.04})).verdict == "supported"


def test_holm_across_rows_can_withhold_support():
    """Eight rows each just significant alone (p ≈ 0.02) do not all survive Holm's correction."""
    n = 6
    # t = 2.6 with 5 df: one-sided p ≈ 0.024 per row; Holm needs p < 0.05/8 for the smallest
    row = pd.Series([0.0, 0.0, 0.0, 0.0, 0.0, 0.0]) + np.array([-1, 1, -1, 1, -1, 1]) * 0.01
    shifted = row + 2.6 * row.std(ddof=1) / math.sqrt(n)
    ev = [sample("BGN-TINY", "vs_bn", shifted, condition=str(b)) for b in (1, 2, 4, 8)]
    ev += [sample("BGN-TINY", "vs_gn", shifted, condition=str(b)) for b in (1, 2, 4, 8)]
    v = judge_claim("BGN-TINY", [*ev, CheckValue("BGN-TINY", "bn_trained", 0.95)])
    assert all(r.p_value < 0.05 for r in v.rows)
    assert all(r.p_adjusted > 0.05 for r in v.rows) and v.verdict == "inconclusive"


def test_fewer_seeds_than_registered_is_underpowered():
    """Audit regression: t intervals with 1–2 degrees of freedom decided claims. Below the
    registry's minimum (5 independent seeds) a row is "inconclusive (underpowered)"."""
    v = judge_claim("GN-BATCH", _gn_batch(0.3, 0.0, n=3))
    assert v.verdict == "inconclusive" and v.note == "underpowered"
    assert v.label == "inconclusive (underpowered)" and v.n_seeds == 3
    assert all(r.note.startswith("underpowered") for r in v.rows)


def test_n_counts_independent_seeds_only():
    """Audit regression: the "seeds" column counted seed × batch-size pairs. A sample holds one
    value per independent seed; pairs across conditions raise."""
    pairs = pd.Series([0.1, 0.2, 0.1, 0.2], index=[0, 0, 1, 1])
    with pytest.raises(ValueError, match="one number per independent seed"):
        Sample("GN-BATCH", "bn_rise", pairs)
    with pytest.raises(TypeError, match="Series indexed by seed"):
        Sample("GN-BATCH", "bn_rise", [0.1, 0.2])
    v = judge_claim("GN-BATCH", _gn_batch(0.1, 0.0, n=7))
    assert v.n_seeds == 7 and {r.n_seeds for r in v.rows} == {7}


def test_inconclusive_row_states_its_power():
    noisy = [
        sample("GN-BATCH", "bn_rise", _values(0.02, sd=0.05)),
        sample("GN-BATCH", "gn_rise", _values(0.0, sd=0.002)),
        CheckValue("GN-BATCH", "bn_trained", 0.95),
        CheckValue("GN-BATCH", "bn_penalty", 0.03),
    ]
    v = judge_claim("GN-BATCH", noisy)
    row = v.rows[0]
    assert v.verdict == "inconclusive" and row.verdict == "inconclusive"
    assert f"rules out effects above {row.ci_high:.3g}" in row.power
    assert "minimum detectable effect at 80 % power" in row.power and "SESOI 0.02" in row.power


def test_significant_but_below_sesoi_is_refuted():
    v = judge_claim("GN-BATCH", _gn_batch(0.008, 0.0, penalty=0.03, sd=0.002))
    assert v.rows[0].verdict == "refuted" and v.rows[0].note == "below SESOI"


def test_two_sided_and_rule_any():
    """GAMMA-WD states no direction: a significant change either way at one batch size
    supports "changes accuracy"; all batch sizes equivalent to 0 refute it."""
    check = CheckValue("GAMMA-WD", "baseline_trained", 0.95)

    def ev(means, sd=0.001):
        return [sample("GAMMA-WD", "acc_change", _values(m, sd=sd, seed=b), condition=str(b))
                for b, m in means.items()] + [check]  # fmt: skip

    assert judge_claim("GAMMA-WD", ev({8: -0.03, 32: 0.0})).verdict == "supported"
    assert judge_claim("GAMMA-WD", ev({8: 0.0, 32: 0.0})).verdict == "refuted"
    assert judge_claim("GAMMA-WD", ev({8: 0.0, 32: 0.0}, sd=0.02)).verdict == "inconclusive"


def test_non_inferiority_margin_moves_the_null():
    """WS-MICRO: err GN+WS − err BN < +1 point (registered null 0.01, direction less)."""
    check = CheckValue("WS-MICRO", "bn_trained", 0.95)
    ok = judge_claim("WS-MICRO", [sample("WS-MICRO", "ws_vs_bn", _values(0.002, sd=0.003)), check])
    assert ok.verdict == "supported"
    worse = judge_claim("WS-MICRO", [sample("WS-MICRO", "ws_vs_bn", _values(0.05)), check])
    assert worse.verdict == "refuted"


def test_exact_rows_and_claims():
    ok = judge_claim("SPAN-ORTH", [Exact("SPAN-ORTH", "sgd_drift", 1e-12, 3)])
    assert ok.verdict == "exact-holds"
    bad = judge_claim("SPAN-ORTH", [Exact("SPAN-ORTH", "sgd_drift", 1e-3, 3),
                                    Exact("SPAN-ORTH", "wd_decay", 1e-12, 3)])  # fmt: skip
    assert bad.verdict == "exact-fails" and "sgd_drift" not in bad.reason
    assert "W_t − W_0" in bad.reason
    passed = exact("BN-GRAD", "rel error", 1e-15, 1e-10, n=1, name="rel_error")
    assert judge_claim("BN-GRAD", [passed]).verdict == "exact-holds"


def test_missing_statistic_or_check_is_not_run_and_unknown_names_raise():
    v = judge_claim("GN-BATCH", _gn_batch(0.1, 0.0)[:1] + _gn_batch(0.1, 0.0)[2:])
    assert v.verdict == "not run" and "gn_rise" in v.reason
    v = judge_claim("GN-BATCH", _gn_batch(0.1, 0.0)[:2])
    assert v.verdict == "not run" and "bn_trained" in v.reason
    with pytest.raises(ValueError, match="not registered.*bn_rise"):
        judge_claim("GN-BATCH", [sample("GN-BATCH", "bn_rise_typo", _values(0.1))])
    with pytest.raises(ValueError, match="check 'trained' is not registered"):
        judge_claim("GN-BATCH", [CheckValue("GN-BATCH", "trained", 1.0)])
    with pytest.raises(ValueError, match="per 'batch_size'"):
        judge_claim("BGN-TINY", [sample("BGN-TINY", "vs_bn", _values(0.1))])
    with pytest.raises(ValueError, match="unknown claim"):
        judge_claim("NOPE", [])


def test_judge_groups_evidence_by_claim():
    out = judge([*_gn_batch(0.1, 0.0), Exact("SPAN-ORTH", "sgd_drift", 0.0, 2)])
    assert {c: v.verdict for c, v in out.items()} == {
        "GN-BATCH": "supported",
        "SPAN-ORTH": "exact-holds",
    }
    assert judge([], ["WRS"])["WRS"].verdict == "not run"
