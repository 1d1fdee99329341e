"""Curvature in the scale-invariant metric (`invariant_metric`, ``metric=`` of
`hessian_eigenvalues` and `gradient_smoothness`), against independent oracles:

- the groups and sizes D, against a loop over rows written from the norms' definitions;
- the canonical point D⁻¹ w computes the same function as w (float64, ε = 0), for every norm;
- λ(D H D) against a dense float64 autograd Hessian;
- λ and β in the metric at w equal the plain measures at the canonical point D⁻¹ w;
- rescaling the WS weights, or the weights feeding GN, by 2 (or by random factors per
  invariant group) leaves the invariant measures unchanged while the raw ones move (the raw
  λ of the invariant weights' block by exactly 1/4).
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hessian_oracle import dense_hessian

from normtheory.measure.curvature import hessian_eigenvalues
from normtheory.measure.landscape import gradient_smoothness
from normtheory.measure.scale_invariant import find_scale_invariant, invariant_metric
from normtheory.models import build_model
from normtheory.norms import list_norms

pytestmark = pytest.mark.usefixtures("one_thread")

IN_SHAPE = (1, 6, 6)
NORM_KW = {"group": {"groups": 2}, "batch_group": {"groups": 2}, "ghost_batch": {"ghost_size": 4}}


def _model(norm, width=4, seed=0):
    """A float64 convnet (2 convs, GAP, head) with every norm's ε and WS's ε set to 0, so the
    scale invariances are exact."""
    torch.manual_seed(seed)
    base = norm.partition("+")[0]
    kw = {**NORM_KW.get(base, {}), **({} if base == "none" else {"eps": 0.0})}
    model = build_model(
        "convnet", norm=norm, in_shape=IN_SHAPE, num_classes=3, width=width, depth=2, norm_kw=kw
    ).double()
    for m in model.modules():
        if hasattr(m, "ws_eps"):
            m.ws_eps = 0.0
    return model


def _data(seed=1, n=16):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *IN_SHAPE, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, 3, (n,), generator=gen)


ONE_GROUP = ("layer", "layer_nobias", "layer_noaffine", "rms", "rms_noaffine")  # C x spatial


def _expected_metric(model, norm):
    """D by a loop over rows, from the norms' definitions: a WS row alone with its centred norm;
    BN/FRN/IN/Ghost BN rows alone; GN / Batch-Group Norm / LN / RMSNorm rows by groups of C/G
    consecutive channels (LN, RMSNorm: one), RMS row norm of the group; nothing for the head
    or without a norm, nor for Batch Renorm and Batch Kalman Norm (their running statistics and
    prediction do not scale with W)."""
    base, ws = norm.partition("+")[0], norm.endswith("+ws") or norm == "nf"  # nf: scaled WS
    out = {}
    for name in ("conv1", "conv2"):
        if base in ("none", "batch_renorm", "batch_kalman") and not ws:
            continue
        w = model.get_submodule(name).weight.detach()
        rows = w.reshape(w.shape[0], -1)
        if ws:
            size = [(r - r.mean()).norm() for r in rows]
        elif base in ("group", "batch_group", *ONE_GROUP):
            g = 1 if base in ONE_GROUP else 2
            per = w.shape[0] // g
            size = [rows[(o // per) * per : (o // per + 1) * per].norm() / math.sqrt(per)
                    for o in range(w.shape[0])]  # fmt: skip
        else:
            size = [r.norm() for r in rows]
        out[f"{name}.weight"] = torch.stack(size)[:, None].expand_as(rows).reshape(w.shape)
    return out


NORMS = [*list_norms(), "group+ws", "none+ws"]


@pytest.mark.parametrize("norm", NORMS)
def test_metric_matches_rows_by_hand(norm):
    model = _model(norm)
    found = invariant_metric(model, _data()[0])
    expected = _expected_metric(model, norm)
    assert found.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(found[name], expected[name], rtol=1e-12, atol=0)


def _canonical(model, metric):
    """A copy of `model` at the canonical point D⁻¹ w."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in metric:
                p.div_(metric[name])
    return model


@pytest.mark.parametrize("norm", NORMS)
def test_canonical_point_is_the_same_function(norm):
    """The groups are invariant sets: dividing each by its size changes no output (train mode)."""
    model = _model(norm).train()
    x, _ = _data()
    metric = invariant_metric(model, x)
    with torch.no_grad():
        torch.testing.assert_close(_canonical(model, metric)(x), model(x), rtol=1e-10, atol=1e-12)


def _flat_metric(model, metric):
    return torch.cat(
        [metric.get(n, torch.ones_like(p)).reshape(-1) for n, p in model.named_parameters()]
    )


@pytest.mark.parametrize("norm", ["group", "group+ws", "batch"])
def test_eigenvalues_match_dense_oracle(norm):
    model = _model(norm, width=4)
    data = _data()
    rng = torch.get_rng_state()
    d = _flat_metric(model, invariant_metric(model, data[0]))
    dense = d[:, None] * dense_hessian(model, [data], "train", rng) * d[None, :]
    expected = torch.linalg.eigvalsh(dense).flip(0)[:3]
    res = hessian_eigenvalues(
        model, F.cross_entropy, data, k=3, tol=1e-10, metric=invariant_metric(model, data[0])
    )
    torch.testing.assert_close(res.values, expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("norm", ["group", "group+ws"])
def test_metric_measures_are_the_plain_ones_at_the_canonical_point(norm):
    model, data = _model(norm), _data()
    metric = invariant_metric(model, data[0])
    canonical = _canonical(model, metric)
    inv_eig = hessian_eigenvalues(model, F.cross_entropy, data, tol=1e-10, metric=metric)
    raw_eig = hessian_eigenvalues(canonical, F.cross_entropy, data, tol=1e-10)
    assert inv_eig.values[0].item() == pytest.approx(raw_eig.values[0].item(), rel=1e-8)
    inv = gradient_smoothness(model, F.cross_entropy, data, lr=0.05, metric=metric)
    raw = gradient_smoothness(canonical, F.cross_entropy, data, lr=0.05)
    for field in ("beta", "grad_norm", "loss_range", "grad_pred_max"):
        assert getattr(inv, field) == pytest.approx(getattr(raw, field), rel=1e-8), field


def _rescaled(model, norm, how):
    """A copy with each invariant weight rescaled: by 2, or by a random factor in [0.5, 2] per
    invariant group (WS: per row; GN with 2 groups: per run of C/2 rows)."""
    model = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name in find_scale_invariant(model, _data()[0]):
            w = model.get_submodule(name).weight
            if how == "x2":
                w.mul_(2.0)
                continue
            groups = w.shape[0] if norm.endswith("+ws") else 2
            c = 0.5 + 1.5 * torch.rand(groups, generator=gen, dtype=w.dtype)
            w.mul_(c.repeat_interleave(w.shape[0] // groups).reshape(-1, 1, 1, 1))
    return model


def _measures(model, data, **kw):
    metric = invariant_metric(model, data[0])
    eig = lambda **a: hessian_eigenvalues(model, F.cross_entropy, data, tol=1e-10, **a)  # noqa: E731
    beta = lambda **a: gradient_smoothness(model, F.cross_entropy, data, lr=0.05, **a).beta  # noqa: E731
    return {
        "eig_inv": eig(metric=metric, **kw).values[0].item(),
        "beta_inv": beta(metric=metric, **kw),
        "eig_raw": eig(**kw).values[0].item(),
        "beta_raw": beta(**kw),
    }


@pytest.mark.parametrize("how", ["x2", "per_group"])
@pytest.mark.parametrize("norm", ["group", "group+ws"])
def test_invariant_measures_do_not_move_when_weights_are_rescaled(norm, how):
    model, data = _model(norm), _data()
    before = _measures(model, data)
    after = _measures(_rescaled(model, norm, how), data)
    for name in ("eig_inv", "beta_inv"):
        assert after[name] == pytest.approx(before[name], rel=1e-8), name
    for name in ("eig_raw", "beta_raw"):  # the raw ones move, far beyond that tolerance
        assert abs(math.log(after[name] / before[name])) > 1e-2, name


@pytest.mark.parametrize("norm", ["group", "group+ws"])
def test_raw_block_eigenvalue_drops_fourfold_invariant_stays(norm):
    """On the block of the invariant weights alone H(2w) = H(w) / 4 exactly."""
    model, data = _model(norm), _data()
    params = [f"{n}.weight" for n in find_scale_invariant(model, data[0])]
    before = _measures(model, data, params=params)
    after = _measures(_rescaled(model, norm, "x2"), data, params=params)
    assert after["eig_raw"] == pytest.approx(before["eig_raw"] / 4, rel=1e-7)
    assert after["eig_inv"] == pytest.approx(before["eig_inv"], rel=1e-8)


def test_no_metric_is_the_plain_measure():
    """metric=None and an empty metric (D = 1 everywhere) give the plain measures."""
    model, data = _model("group+ws"), _data()
    plain = _measures(model, data)
    eig = hessian_eigenvalues(model, F.cross_entropy, data, tol=1e-10, metric={})
    beta = gradient_smoothness(model, F.cross_entropy, data, lr=0.05, metric={}).beta
    assert eig.values[0].item() == plain["eig_raw"] and beta == plain["beta_raw"]
