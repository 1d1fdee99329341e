"""SI-ORTH: both identities hold for a weight feeding the library's BatchNorm with eps = 0, and
fail without a norm or with the default eps."""

import pytest
import torch
import torch.nn.functional as F
from identity_problems import SEEDS, TINY_EPS, TOL, generator, randn

from normtheory.measure.identities_si import check_si_orth
from normtheory.norms import build_norm

pytestmark = pytest.mark.usefixtures("one_thread")


def _si_problem(seed: int, norm: str, eps: float = TINY_EPS):
    """x (16, 5) -> x W^T (16, 4) -> library norm in train mode -> tanh -> linear -> CE."""
    gen = generator(seed)
    x, weight, w2 = randn(gen, 16, 5), randn(gen, 4, 5), randn(gen, 3, 4)
    targets = torch.randint(3, (16,), generator=gen)
    layer = build_norm(norm, 4, eps=eps) if norm != "none" else build_norm(norm, 4)
    layer = layer.double().train()
    if norm == "batch":
        with torch.no_grad():
            layer.weight.copy_(1 + 0.5 * randn(gen, 4))
            layer.bias.copy_(0.5 * randn(gen, 4))

    def loss(w: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(torch.tanh(layer(x @ w.T)) @ w2.T, targets)

    return weight, loss


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("c", [0.3, 2.5])
def test_si_orth_holds_for_weight_feeding_library_batch_norm(seed, c):
    weight, loss = _si_problem(seed, "batch")
    checks = check_si_orth(weight, loss, c=c, tol=TOL)
    assert len(checks) == 2 and all(ch.holds and ch.claim == "SI-ORTH" for ch in checks), checks


@pytest.mark.parametrize("seed", SEEDS)
def test_si_orth_fails_for_weight_feeding_no_norm(seed):
    weight, loss = _si_problem(seed, "none")
    orth, homog = check_si_orth(weight, loss, tol=TOL)
    assert not orth.holds and orth.rel_error > 1e-3, orth
    assert not homog.holds and homog.rel_error > 1e-3, homog


def test_si_orth_fails_with_the_default_batch_norm_eps():
    """eps = 1e-5 breaks exact scale invariance: the precondition eps = 0 matters."""
    weight, loss = _si_problem(0, "batch", eps=1e-5)
    orth, _ = check_si_orth(weight, loss, tol=TOL)
    assert not orth.holds, orth
