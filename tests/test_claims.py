"""`normtheory.claims`, the claims registry: well formed, every claim tested by some study or exact
check, every study on it, tests fixed by their content hash, and the hash's history found in git.
(A `Study` naming an unknown claim is refused: ``tests/test_study.py``.)"""

import shutil

import pytest

from normtheory.claims import CLAIMS, REGISTRY, digests, parse_registry, registered_at
from normtheory.exact import EXACT_CLAIMS
from normtheory.registry import list_studies, load_study

STUDIES = list_studies()


def test_every_claim_has_a_complete_test():
    for cid, claim in CLAIMS.items():
        test = claim.test
        assert claim.statement and claim.source and claim.setting and claim.paper, cid
        assert test.primary, f"{cid}: no primary statistic"
        if claim.kind == "empirical":
            assert test.min_seeds >= 5, cid
            assert claim.scale_needed, f"{cid}: say what scale would show the effect"
            assert all(s.direction != "exact" for s in test.primary), cid
        else:
            assert all(s.direction == "exact" for s in test.primary), cid


def test_every_claim_is_tested_by_its_registered_study_or_the_exact_checks():
    declared = {name: load_study(name).claims for name in STUDIES}
    for cid, claim in CLAIMS.items():
        assert claim.study in declared, f"{cid}: registered study {claim.study!r} missing"
        assert cid in declared[claim.study], f"{claim.study} does not declare {cid}"
        if claim.study == "exact_checks":  # the identities; IC-SIGN is ic_layer's
            assert claim.kind == "exact" and cid in EXACT_CLAIMS, cid
    tested = set().union(*declared.values())
    assert tested == set(CLAIMS)


@pytest.mark.parametrize("name", STUDIES)
def test_study_is_on_the_registry(name):
    """Loads; declares registered claims only; every profile builds its cells; the quick
    profile has the ≥ 5 independent seeds a reference verdict needs; statistics, not verdicts."""
    study = load_study(name)
    assert study.claims and all(c in CLAIMS for c in study.claims)
    assert "quick" in study.profiles
    for profile in study.profiles.values():
        assert profile.grid.cells()
    assert study.profile("quick").seeds >= 5
    assert not hasattr(study, "verdicts") and callable(study.statistics)


def test_digest_fixes_the_test_content():
    text = REGISTRY.read_text(encoding="utf-8")
    again = parse_registry(text)
    assert {c: v.digest for c, v in again.items()} == digests()
    changed = parse_registry(
        text.replace(
            'name = "bn_rise"\ntext = "BN test error at batch 2 − at the largest batch (per seed; every batch size trained the same epochs at its tuned LR)"\ndirection = "greater"\nsesoi = 0.02',
            'name = "bn_rise"\ntext = "BN test error at batch 2 − at the largest batch (per seed; every batch size trained the same epochs at its tuned LR)"\ndirection = "greater"\nsesoi = 0.01',
        )
    )
    assert changed["GN-BATCH"].test.statistic("bn_rise").sesoi == 0.01
    assert changed["GN-BATCH"].digest != CLAIMS["GN-BATCH"].digest
    assert changed["WS-MICRO"].digest == CLAIMS["WS-MICRO"].digest  # others untouched


def test_a_checks_scale_needed_explains_and_is_not_part_of_the_test():
    """A check's own scale_needed is the text a failed check shows; editing it must not flag
    the runs made under the test as "test changed", while editing the check itself must."""
    text = REGISTRY.read_text(encoding="utf-8")
    wrs = CLAIMS["WRS"].test
    note = next(c for c in wrs.checks if c.name == "wd_trained").scale_needed
    assert note and note != CLAIMS["WRS"].scale_needed
    reworded = parse_registry(text.replace(note, "something else entirely"))
    assert reworded["WRS"].digest == CLAIMS["WRS"].digest
    stricter = parse_registry(
        text.replace(
            'text = "SGD+WD reaches ≥ 85 % test accuracy (mean over setups and seeds)"\nop = ">="\nthreshold = 0.85',
            'text = "SGD+WD reaches ≥ 85 % test accuracy (mean over setups and seeds)"\nop = ">="\nthreshold = 0.86',
        )
    )
    assert stricter["WRS"].digest != CLAIMS["WRS"].digest


def test_bad_registry_entries_are_refused():
    with pytest.raises(ValueError, match="unknown direction 'up'"):
        parse_registry('[X]\nstatement="s"\nsource="s"\nkind="empirical"\n'
                       '[[X.statistics]]\nname="a"\ntext="t"\ndirection="up"\nsesoi=0.1\n')  # fmt: skip
    with pytest.raises(ValueError, match="unknown rule 'most'"):
        parse_registry('[X]\nstatement="s"\nsource="s"\nkind="empirical"\nrule="most"\n')


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_registered_at_names_a_commit_per_claim():
    history = registered_at()
    if not history:
        pytest.skip("not a git checkout")
    assert set(history) == set(CLAIMS)
    assert all(v == "uncommitted" or len(v) >= 7 for v in history.values())
