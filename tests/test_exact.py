"""The exact claims' problems (`normtheory.exact`): every check holds in seconds, leaves the RNG
and threads alone, and fails when its identity is broken."""

import time

import pytest
import torch

from normtheory import exact
from normtheory.claims import CLAIMS
from normtheory.measure import identities
from normtheory.verdicts import judge, judge_claim

pytestmark = pytest.mark.usefixtures("one_thread")


def _verdicts(seed):
    return judge(exact.exact_checks(seed))


def test_every_exact_claim_holds_in_seconds():
    start = time.perf_counter()
    evidence = exact.exact_checks(0) + exact.exact_checks(1)
    assert time.perf_counter() - start < 20
    assert [e.claim for e in exact.exact_checks(2)] == list(exact.EXACT_CLAIMS)
    assert all(CLAIMS[c].kind == "exact" for c in exact.EXACT_CLAIMS)
    for e in evidence:
        v = judge_claim(e.claim, [e])
        assert v.verdict == "exact-holds", (e.claim, e.value, e.detail)
        assert e.detail
    floating = [e for e in evidence if e.claim not in ("IC-CORR", "IC-MI")]
    assert all(e.value < 1e-13 for e in floating)  # float64 rounding, far below 1e-10


def test_exact_checks_leave_the_global_rng_and_threads_alone():
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    exact.check_si_growth(0), exact.check_span_orth(0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.get_num_threads() == threads


def test_unknown_claim_is_refused():
    with pytest.raises(ValueError, match="unknown exact claim 'GN-BATCH'"):
        exact.exact_check("GN-BATCH")


def _bn_problem():
    gen = torch.Generator().manual_seed(3)
    y = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    t = torch.randint(3, (16,), generator=gen)
    return y, lambda z: torch.nn.functional.cross_entropy(torch.tanh(z) @ w, t)


def _broken_identities():
    """The four identity checks of `measure.identities` in a broken form, as IdentityChecks."""
    y, head = _bn_problem()
    conv_w = torch.randn(
        4, 3, 3, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    terms = identities.bn_hess_terms(y, 1.3, 0.2, head)
    flipped = terms.quadratic + terms.curvature  # the curvature term with the wrong sign
    err = float(((terms.lhs - flipped).abs() / terms.lhs.abs().clamp_min(1e-300)).max())
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return {
        "BN-GRAD": [identities.check_bn_grad(y, 1.3, 0.2, head, form="1/sqrt(m)")],
        "BN-HESS": [identities.IdentityCheck("BN-HESS", 0, 0, err, err <= 1e-10)],
        "WS-GRAD": [
            identities.check_ws_grad(conv_w, lambda w: w.square().sum().sin(), correction=1)
        ],
        # a weight feeding no norm is not scale-invariant
        "SI-ORTH": identities.check_si_orth(
            torch.randn(3, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64),
            lambda w: torch.tanh(x @ w.T).square().sum(),
        ),
    }


BROKEN = {
    "SI-GROWTH": lambda: exact.check_si_growth(0, growth_term=False),  # "the norm is kept"
    "SPAN-ORTH": lambda: exact.check_span_orth(0, shrink=lambda lr, wd: 1 - 2 * lr * wd),
    "IC-CORR": lambda: exact.check_ic_corr(0, factor=lambda q: q**2),
    "IC-MI": lambda: exact.check_ic_mi(0, factor=lambda q: q),
}


@pytest.mark.parametrize("claim", exact.EXACT_CLAIMS)
def test_each_check_fails_when_its_identity_is_broken(claim):
    if claim in BROKEN:
        evidence = BROKEN[claim]()
    else:
        evidence = exact.from_identity(claim, _broken_identities()[claim])
    assert evidence.claim == claim
    assert judge_claim(claim, [evidence]).verdict == "exact-fails", evidence.value


# A scale between verify's and Fashion-MNIST's: every size differs from the default, in seconds.
MID = exact.ExactScale(
    identities.IdentityShapes(rows=24, features=20, channels=8, grid=(4, 8, 5, 5),
                              images=(4, 2, 8, 8), conv_out=6, gn_channels=16, gn_groups=4),
    rows=24, features=20, width=12, span_features=40, span_width=24, span_block=4, units=10,
    samples=1024,
)  # fmt: skip


def test_the_small_scale_is_verifys_problem():
    """`exact_check(claim, seed)` is the problem `verify` always ran (scale "small")."""
    for claim in ("SI-GROWTH", "SPAN-ORTH"):
        default, small = exact.exact_check(claim, 1), exact.exact_check(claim, 1, "small")
        assert (default.value, default.detail) == (small.value, small.detail), claim
    with pytest.raises(ValueError, match="unknown exact scale 'huge'; valid: small, fashion_mnist"):
        exact.exact_check("BN-GRAD", 0, "huge")


def test_every_exact_check_holds_at_a_larger_scale_and_still_fails_when_broken():
    """The scaled problems: the identities hold (float64 rounding), a broken identity fails at
    the same sizes (the scale does not hide a wrong claim), and the details name the sizes."""
    checks = identities.run_exact_checks(0, MID.identities)
    assert checks and all(c.holds and c.rel_error < 1e-12 for c in checks), checks
    assert any("(4, 8, 5, 5) input" in c.detail for c in checks)
    assert any("4 groups of 4" in c.detail for c in checks)
    growth = exact.check_si_growth(0, scale=MID)
    assert growth.value < 1e-12 and "24 × 20 inputs, 12 units" in growth.detail
    assert exact.check_si_growth(0, scale=MID, growth_term=False).value > 1e-6
    span = exact.check_span_orth(0, scale=MID)
    assert span.value < 1e-12 and "(blocks of 4) in R^40" in span.detail
    assert exact.check_span_orth(0, scale=MID, shrink=lambda lr, wd: 1 - 2 * lr * wd).value > 1e-3
    for check, wrong in ((exact.check_ic_corr, lambda q: q**2), (exact.check_ic_mi, lambda q: q)):
        holds = check(0, n=MID.samples, d=MID.units)
        assert holds.value < 4 and "of 10 zero-mean Gaussian units" in holds.detail
        assert check(0, n=MID.samples, d=MID.units, factor=wrong).value > 4


@pytest.mark.slow
@pytest.mark.parametrize("scale", ["fashion_mnist"])
def test_every_exact_claim_holds_at_the_standard_tiers_shapes(scale):
    for claim in exact.EXACT_CLAIMS:
        e = exact.exact_check(claim, 0, scale)
        assert judge_claim(claim, [e]).verdict == "exact-holds", (claim, e.value, e.detail)
