"""The exact identities together: `run_exact_checks` (what ``normtheory verify`` runs) holds on
its small random problems, deterministically, leaving the global RNG alone."""

import pytest
import torch
from identity_problems import SEEDS, TOL

from normtheory.measure.identities import IdentityCheck, run_exact_checks

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("seed", SEEDS)
def test_run_exact_checks_all_hold(seed):
    checks = run_exact_checks(seed)
    assert all(isinstance(c, IdentityCheck) for c in checks)
    assert {c.claim for c in checks} == {"BN-GRAD", "BN-HESS", "WS-GRAD", "SI-ORTH"}
    assert all(c.holds and c.rel_error <= TOL for c in checks), checks


def test_run_exact_checks_is_deterministic_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    assert run_exact_checks(3) == run_exact_checks(3)
    assert torch.equal(torch.random.get_rng_state(), state)
