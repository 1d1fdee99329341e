"""``normtheory verify``: the exact checks hold, each fails when its identity is broken, the
results are stored for the report, and the exit code says whether an exact claim failed."""

import time

import pandas as pd
import pytest
import torch

from normtheory import verify
from normtheory.claims import CLAIMS
from normtheory.cli import main
from normtheory.measure import identities

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def verdicts():
    return verify.exact_checks(0)


def test_every_exact_claim_holds_in_seconds(verdicts):
    start = time.perf_counter()
    again = verify.exact_checks(1)
    assert time.perf_counter() - start < 10
    assert [v.claim for v in verdicts] == list(verify.EXACT_CLAIMS)
    assert all(CLAIMS[c].kind == "exact" for c in verify.EXACT_CLAIMS)
    for v in [*verdicts, *again]:
        assert v.verdict == "exact-holds", (v.claim, v.estimate, v.detail)
        assert "tolerance" in v.statistic and v.detail
    floating = [v for v in verdicts if v.claim not in ("IC-CORR", "IC-MI")]
    assert all(v.estimate < 1e-13 for v in floating)  # float64 rounding, far below 1e-10


def test_exact_checks_leave_the_global_rng_and_threads_alone():
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    verify.check_si_growth(0), verify.check_span_orth(0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.get_num_threads() == threads


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
        "BN-HESS": [identities.IdentityCheck("BN-HESS", 0, 0, err, err <= verify.TOL)],
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
    "SI-GROWTH": lambda: verify.check_si_growth(0, growth_term=False),  # "the norm is kept"
    "SPAN-ORTH": lambda: verify.check_span_orth(0, shrink=lambda lr, wd: 1 - 2 * lr * wd),
    "IC-CORR": lambda: verify.check_ic_corr(0, factor=lambda q: q**2),
    "IC-MI": lambda: verify.check_ic_mi(0, factor=lambda q: q),
}


@pytest.mark.parametrize("claim", verify.EXACT_CLAIMS)
def test_each_check_fails_when_its_identity_is_broken(claim):
    if claim in BROKEN:
        v = BROKEN[claim]()
    else:
        v = verify.from_identity(claim, _broken_identities()[claim])
    assert v.claim == claim and v.verdict == "exact-fails", (v.estimate, v.statistic)


def test_store_and_load_round_trip(verdicts, tmp_path):
    out = verify.write_results(verdicts, tmp_path / "verify", command="test")
    frame = lambda vs: pd.DataFrame([v.to_dict() for v in vs])  # noqa: E731  (NaN == NaN here)
    pd.testing.assert_frame_equal(frame(verify.load_results(out)), frame(verdicts))
    assert (out / "manifest.json").exists()


def test_cli_verify_skip_studies_writes_rows_and_exits_0(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "--skip-studies"]) == 0
    stored = pd.read_csv(tmp_path / "runs" / "verify" / "verdicts.csv")
    assert list(stored["claim"]) == list(verify.EXACT_CLAIMS)
    assert set(stored["verdict"]) == {"exact-holds"}
    claims = pd.read_csv(tmp_path / "reports" / "results" / "claims.csv", keep_default_na=False)
    assert set(claims["claim"]) == set(CLAIMS)
    out = capsys.readouterr().out
    assert "exact checks: 8 of 8 hold" in out and "normtheory: claims" in out
    assert "BN-GRAD" in out and "exact-holds" in out and "reports/index.html" in out


def test_cli_verify_exits_1_when_an_exact_check_fails(tmp_path, monkeypatch, capsys):
    real = verify.exact_checks

    def failing(seed=0):
        return [
            verify.check_ic_corr(seed, factor=lambda q: q**2) if v.claim == "IC-CORR" else v
            for v in real(seed)
        ]

    monkeypatch.setattr(verify, "exact_checks", failing)
    argv = ["verify", "--skip-studies", "--runs", str(tmp_path / "r"), "--out", str(tmp_path / "o")]
    assert main(argv) == 1
    assert "exact claims that fail: IC-CORR" in capsys.readouterr().err
    claims = pd.read_csv(tmp_path / "o" / "results" / "claims.csv")
    assert claims.set_index("claim").loc["IC-CORR", "verdict"] == "exact-fails"


def test_cli_verify_runs_the_named_studies_and_reuses_complete_cells(tmp_path, monkeypatch, capsys):
    """``--studies`` runs only those, into <runs>/<study>-quick; a second verify reuses the
    stored cells (shrunk here to a few steps by wrapping run_study)."""
    import normtheory.study as study_mod

    real, calls = study_mod.run_study, []

    def small(study, **kw):
        calls.append(study.name)
        return real(study, **kw, seeds=1, overrides={"steps": "4", "width": "4"})

    monkeypatch.setattr(study_mod, "run_study", small)
    argv = [
        "verify",
        "--studies",
        "scale_invariance",
        "--device",
        "cpu",
        "--runs",
        str(tmp_path / "runs"),
        "--out",
        str(tmp_path / "rep"),
    ]
    assert main(argv) == 0
    assert calls == ["scale_invariance"]
    assert (tmp_path / "runs" / "scale_invariance-quick" / "manifest.json").exists()
    capsys.readouterr()
    assert main(argv) == 0
    assert "0 completed" in capsys.readouterr().out
    rows = pd.read_csv(tmp_path / "rep" / "results" / "rows.csv", keep_default_na=False)
    assert set(rows[rows["run"] == "scale_invariance-quick"]["claim"]) == {"SI-ORTH", "SI-GROWTH"}
    claims = pd.read_csv(tmp_path / "rep" / "results" / "claims.csv", keep_default_na=False)
    exact = claims.set_index("claim").loc[["SI-ORTH", "SI-GROWTH"]]
    assert (exact["verdict"] == "exact-holds").all()
    assert exact["reason"].str.contains("scale_invariance-quick").all()  # both runs' checks


def test_cli_verify_unknown_study_is_bad_input(tmp_path, capsys):
    argv = ["verify", "--studies", "nope", "--runs", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "unknown study 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
