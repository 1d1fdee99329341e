"""`batch_dependence` against independent oracles: every registered norm classified by hand as
batch-independent (0 to rounding) or batch-dependent (clearly > 0); the options that make a
batch norm per-example; a one-layer BN whose change is computed by hand; FRN's formula per
example by hand (no cross-example term); and the model left exactly as it was."""

import numpy as np
import pytest
import torch
from torch import nn

from normtheory.measure.batch_dependence import batch_dependence
from normtheory.models import build_model
from normtheory.norms import BatchNorm, FilterResponseNorm, build_norm, list_norms

pytestmark = pytest.mark.usefixtures("one_thread")

# By construction: these pool statistics over the examples of a batch (Ghost BN within a ghost
# batch of 16, Batch-Group Norm over the whole batch by default); "none" has no norm layer.
BATCH_DEPENDENT = {"batch", "ghost_batch", "batch_group", "batch_renorm", "batch_kalman"}
BATCH_INDEPENDENT = {"frn", "group", "layer", "instance"}
BATCH_INDEPENDENT |= {"layer_nobias", "layer_noaffine", "rms", "rms_noaffine"}
NO_NORM_LAYER = {"none", "nf"}
SHAPES = {"convnet": (2, 6, 6), "mlp": (12,)}


def _model(arch: str, norm: str, **norm_kw) -> nn.Module:
    torch.manual_seed(0)
    kw = {"groups": 2} if norm in ("group", "batch_group") else {}
    return build_model(
        arch, norm=norm, in_shape=SHAPES[arch], num_classes=3, width=4, depth=2,
        norm_kw={**kw, **norm_kw},
    )  # fmt: skip


def _batches(arch: str, n: int = 6):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, *SHAPES[arch], generator=gen), torch.randn(
        n, *SHAPES[arch], generator=gen
    )


def test_every_norm_is_classified():
    """A new norm must be put in one of the sets (the test below reads its expectation there)."""
    assert set(list_norms()) == BATCH_DEPENDENT | BATCH_INDEPENDENT | NO_NORM_LAYER


@pytest.mark.parametrize("arch", sorted(SHAPES))
@pytest.mark.parametrize("norm", list_norms())
def test_known_dependence_of_every_norm(arch, norm):
    change = batch_dependence(_model(arch, norm), *_batches(arch))
    if norm in NO_NORM_LAYER:
        assert change == {}
        return
    assert list(change) == ["norm1", "norm2"]
    if norm in BATCH_INDEPENDENT:
        assert max(change.values()) <= 1e-12, change
    else:
        assert norm in BATCH_DEPENDENT and min(change.values()) > 1e-3, change


@pytest.mark.parametrize(
    ("norm", "kw", "keep", "dependent"),
    [
        ("ghost_batch", {"ghost_size": 2}, 2, False),  # the kept pair is its own ghost batch
        ("ghost_batch", {"ghost_size": 2}, 1, True),  # example 1 is replaced, shares the block
        ("batch_group", {"examples_per_group": 1}, 1, False),  # statistics per example
        ("batch_group", {"examples_per_group": 3}, 3, False),
        ("batch_group", {"examples_per_group": 3}, 2, True),
    ],
)
def test_block_structure_decides(norm, kw, keep, dependent):
    change = batch_dependence(_model("convnet", norm, **kw), *_batches("convnet"), keep=keep)
    assert (min(change.values()) > 1e-3) if dependent else (max(change.values()) <= 1e-12)


def _bn_by_hand(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """Train-mode BN on (N, C) by explicit loops: biased batch variance, per channel."""
    out = np.empty_like(x)
    for c in range(x.shape[1]):
        mu = sum(x[:, c]) / len(x)
        var = sum((v - mu) ** 2 for v in x[:, c]) / len(x)
        out[:, c] = gamma[c] * (x[:, c] - mu) / np.sqrt(var + eps) + beta[c]
    return out


def test_bn_change_equals_hand_computation():
    torch.manual_seed(2)
    bn = BatchNorm(5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2), bn.bias.normal_()
    model = nn.Sequential(bn)
    x, other = torch.randn(7, 5), torch.randn(7, 5)
    mixed = torch.cat([x[:2], other[2:]])
    g, b = bn.weight.detach().double().numpy(), bn.bias.detach().double().numpy()
    ya = _bn_by_hand(x.double().numpy(), g, b, bn.eps)[:2]
    yb = _bn_by_hand(mixed.double().numpy(), g, b, bn.eps)[:2]
    expect = max(np.linalg.norm(ya - yb, axis=1) / np.linalg.norm(ya, axis=1))
    change = batch_dependence(model, x, other, keep=2)
    assert change == {"0": pytest.approx(expect, rel=1e-10)} and expect > 0.05


def test_frn_formula_per_example_by_hand():
    """FRN on a batch equals y = max(γ x / √(mean(x², spatial) + ε) + β, τ) computed for each
    example and channel alone: the formula has no term across examples."""
    torch.manual_seed(3)
    frn = FilterResponseNorm(3, eps=1e-3).double()
    with torch.no_grad():
        frn.weight.uniform_(0.5, 2), frn.bias.normal_(), frn.tau.normal_(0, 0.3)
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    g, b, t = (p.detach().numpy() for p in (frn.weight, frn.bias, frn.tau))
    xs = x.numpy()
    expect = np.empty_like(xs)
    for n in range(4):
        for c in range(3):
            nu2 = (xs[n, c] ** 2).sum() / xs[n, c].size
            expect[n, c] = np.maximum(g[c] * xs[n, c] / np.sqrt(nu2 + 1e-3) + b[c], t[c])
    with torch.no_grad():
        np.testing.assert_allclose(frn.train()(x).numpy(), expect, rtol=1e-12, atol=1e-14)
        single = torch.cat([frn(x[n : n + 1]) for n in range(4)]).numpy()
    np.testing.assert_allclose(single, expect, rtol=1e-12, atol=1e-14)
    assert batch_dependence(nn.Sequential(frn), x, torch.randn_like(x)) == {"0": 0.0}


def test_model_and_rng_untouched():
    model = _model("convnet", "batch")
    x, other = _batches("convnet")
    model(x).sum().backward()  # grads and updated running statistics to protect
    model.eval()
    model.norm1.train()  # a mixed mode to restore
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    batch_dependence(model, x, other)
    after = model.state_dict()
    assert all(
        torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before
    )
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)


def test_bad_input_raises():
    model = nn.Sequential(build_norm("frn", 3))
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="same shape"):
        batch_dependence(model, x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="keep"):
        batch_dependence(model, x, x, keep=4)
