"""The exact claims' problems: BN-GRAD, BN-HESS, WS-GRAD, SI-ORTH, SI-GROWTH, SPAN-ORTH, IC-CORR and
IC-MI (``CLAIMS.md``), each on a small seeded float64 problem, in seconds.

Each check computes the left-hand side of its claim through the library's own code (its
BatchNorm, GroupNorm and WS layers, models from `build_model`, `find_scale_invariant`,
`InputSpan`, `dropout_ratios`) and the right-hand side independently of it (the closed form on
an explicit float64 forward with the biased variance and ε = 0, the subspace the inputs were
drawn from, the factor q or q²), so a bug in the library makes the sides disagree
(``tests/test_exact_mutations.py`` injects such bugs). It returns the worst deviation as
`normtheory.verdicts.Exact` evidence and the registry's tolerance decides
(`normtheory/claims.toml`: 1e-10 relative for the identities; for IC-CORR and IC-MI, which hold
in expectation over dropout masks, 4 standard errors of the estimated ratio). The
``exact_checks`` study runs them as an ordinary study and ``normtheory verify`` runs that study.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from normtheory.evidence import Exact
from normtheory.measure.dropout import dropout_ratios
from normtheory.measure.identities import IdentityCheck, run_exact_checks
from normtheory.measure.scale_invariant import find_scale_invariant
from normtheory.measure.span import InputSpan
from normtheory.measure.weights import growth_residual
from normtheory.models import build_model

EXACT_CLAIMS = (
    "BN-GRAD",
    "BN-HESS",
    "WS-GRAD",
    "SI-ORTH",
    "SI-GROWTH",
    "SPAN-ORTH",
    "IC-CORR",
    "IC-MI",
)
KEEPS = (0.9, 0.5, 0.3)


def from_identity(claim: str, checks: list[IdentityCheck]) -> Exact:
    """The evidence of one claim's `IdentityCheck`s: the worst relative error."""
    worst = max(checks, key=lambda c: math.inf if math.isnan(c.rel_error) else c.rel_error)
    detail = "; ".join(
        f"{c.detail or c.claim}: lhs {c.lhs:.6g}, rhs {c.rhs:.6g}, rel. error {c.rel_error:.2g}"
        for c in checks
    )
    return Exact(claim, "rel_error", worst.rel_error, 1, detail)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _bn_mlp(seed: int, in_features: int = 6, width: int = 8) -> torch.nn.Module:
    """A float64 BN MLP with the norms' ε = 0, so its BN-fed weights are exactly invariant."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = build_model(
            "mlp",
            norm="batch",
            in_shape=(in_features,),
            num_classes=3,
            width=width,
            depth=2,
            norm_kw={"eps": 0.0},
        )
    finally:
        torch.random.set_rng_state(state)
    return model.double().train()


def check_si_growth(
    seed: int = 0, *, lr: float = 0.5, weight_decay: float = 0.05, growth_term: bool = True
) -> Exact:
    """SI-GROWTH: one plain-SGD step on every BN-fed weight of a BN MLP (ε = 0, float64), without
    and with coupled weight decay λ: ‖w_{t+1}‖² = (1 − ηλ)²‖w_t‖² + η²‖g_t‖², per output row.
    Error: the largest |residual| / ‖w_{t+1}‖² (`growth_residual`) over rows, weights and λ.

    `growth_term=False` checks the wrong claim that the norm is preserved (no η²‖g‖² term): the
    test that shows this check can fail."""
    gen = _gen(seed)
    x = torch.randn(16, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(3, (16,), generator=gen)
    worst, parts = 0.0, []
    for wd in (0.0, weight_decay):
        model = _bn_mlp(seed)
        names = list(find_scale_invariant(model, x))
        layers = {n: model.get_submodule(n) for n in names}
        before = {n: m.weight.detach().clone() for n, m in layers.items()}
        grads = torch.autograd.grad(
            F.cross_entropy(model(x), y), [m.weight for m in layers.values()]
        )
        with torch.no_grad():  # torch.optim.SGD(lr, weight_decay) without momentum
            for m, g in zip(layers.values(), grads):
                m.weight.mul_(1 - lr * wd).sub_(lr * g)
        for (n, m), g in zip(layers.items(), grads):
            res = growth_residual(before[n], m.weight, g, lr, wd, relative=True, per_channel=True)
            if not growth_term:  # drop η²‖g_o‖² from the prediction
                rows = m.weight.detach().reshape(len(res), -1).square().sum(1)
                res = res + lr**2 * g.reshape(len(res), -1).square().sum(1) / rows
            err = float(res.abs().max())
            worst = max(worst, err)
            parts.append(f"{n}, λ = {wd:g}: {err:.2g}")
    detail = "one SGD step (η = 0.5) on the BN-fed weights of a BN MLP (ε = 0, float64); "
    return Exact("SI-GROWTH", "rel_error", worst, 1, detail + "; ".join(parts))


def _span_batches(
    seed: int, steps: int, size: int = 16
) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """`steps` batches (size, 8) whose spans differ and overlap, their labels, and an
    orthonormal basis B (8, 3) of the span of all of them.

    With b1, b2, b3 the columns of B, batch t is drawn from family t mod 3: span{b1, b2},
    span{b2, b3}, then span{b1 − b3} (a mix of the first two, in neither). No batch spans all
    of span(B); with 20 steps the last one is from span{b2, b3} and misses b1."""
    gen = _gen(seed)
    basis, _ = torch.linalg.qr(torch.randn(8, 3, generator=gen, dtype=torch.float64))
    b1, b2, b3 = basis.T
    families = (
        torch.stack([b1, b2], 1),
        torch.stack([b2, b3], 1),
        (b1 - b3)[:, None],
    )  # (8, k) each
    xs, ys = [], []
    for t in range(steps):
        fam = families[t % 3]
        xs.append(torch.randn(size, fam.shape[1], generator=gen, dtype=torch.float64) @ fam.T)
        ys.append(torch.randint(3, (size,), generator=gen))
    return xs, ys, basis


def check_span_orth(
    seed: int = 0,
    *,
    lr: float = 0.1,
    weight_decay: float = 0.05,
    steps: int = 20,
    shrink: Callable[[float, float], float] = lambda lr, wd: 1 - lr * wd,
) -> Exact:
    """SPAN-ORTH: the first layer of a BN MLP (`build_model`, ε = 0, float64) is trained for
    `steps` steps of SGD (plain, with momentum 0.9, and with weight decay λ), batch t drawn from
    one of three overlapping subspaces of R⁸ (`_span_batches`), together spanning a 3-dim S.
    The library's `InputSpan` is fed every batch; its complement projector P⊥ gives the left
    side W_t·P⊥. The right side is the claim on the known span: shrink(η, λ)^t · W_0·Q⊥ with
    Q⊥ = I − B Bᵀ from the basis B of S the batches were drawn from (shrink = 1 − ηλ with
    decay, 1 without). A span that forgets earlier batches (or never adds later ones) puts
    directions the weight moved in into P⊥, and the sides disagree. Error: the largest
    ‖W_t P⊥ − predicted‖ / ‖predicted‖. Passing another `shrink` shows the check can fail."""
    xs, ys, basis = _span_batches(seed, steps)
    oracle = torch.eye(8, dtype=torch.float64) - basis @ basis.T  # (8, 8), Q⊥
    worst, parts = 0.0, []
    for tag, momentum, wd in (
        ("SGD", 0.0, 0.0),
        ("SGD+momentum", 0.9, 0.0),
        ("SGD+WD", 0.0, weight_decay),
    ):
        model = _bn_mlp(seed, in_features=8, width=16)
        layer = model.get_submodule("fc1")
        span = InputSpan(layer)
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
        w0 = layer.weight.detach().clone()
        for x, y in zip(xs, ys):
            span.update(x)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        got = layer.weight.detach() @ span.complement_projector()  # (16, 8)
        predicted = (shrink(lr, wd) ** steps if wd else 1.0) * (w0 @ oracle)
        err = float((got - predicted).norm() / predicted.norm())
        worst = max(worst, err)
        parts.append(f"{tag}: {err:.2g}")
    detail = (
        f"first layer of a BN MLP, batches from span{{b1, b2}}, span{{b2, b3}}, span{{b1 − b3}} "
        f"in R⁸ in turn, {steps} steps (η = {lr:g}, λ = {weight_decay:g}); " + "; ".join(parts)
    )
    return Exact("SPAN-ORTH", "rel_error", worst, 1, detail)


def _zero_mean_units(seed: int, n: int, d: int = 6) -> Tensor:
    """(n, d) correlated Gaussian units, standardized over the samples (as train-mode BN)."""
    gen = _gen(seed)
    z = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    mix = torch.randn(2, d, generator=gen, dtype=torch.float64)
    x = z @ mix + 0.7 * torch.randn(n, d, generator=gen, dtype=torch.float64)
    return (x - x.mean(0)) / x.std(0)


def _ic_check(
    claim: str,
    which: str,
    seed: int,
    factor: Callable[[float], float],
    n: int,
    n_masks: int,
) -> Exact:
    """The dropout ratio (`dropout_ratios`, slope through the origin over all pairs) at every q
    of `KEEPS`, against factor(q). Error: the largest |ratio − factor(q)| over q, compared with
    4 standard errors of the ratio for n · n_masks samples (see `check_ic_corr`)."""
    units = _zero_mean_units(seed, n)
    corr = units.T.corrcoef()
    rho = corr[torch.triu_indices(*corr.shape, offset=1).unbind()]
    samples = n * n_masks
    if which == "corr":  # SE(ρ̂) ≈ (1 − ρ²)/√N per pair; the slope averages with weights ρ
        se = float((rho.abs() * (1 - rho**2)).sum() / rho.square().sum()) / math.sqrt(samples)
    else:  # Gaussian MI I = −½ log(1 − ρ²): SE(Î) ≈ |ρ|/√N (delta method), relative to I
        mi = -0.5 * torch.log1p(-rho.square())
        se = float((mi * rho.abs()).sum() / mi.square().sum()) / math.sqrt(samples)
    worst, parts = 0.0, []
    for i, q in enumerate(KEEPS):
        r = dropout_ratios(units, q, n_masks=n_masks, seed=seed + i)
        got = r.corr if which == "corr" else r.mi
        err = abs(got - factor(q))
        worst = max(worst, err)
        parts.append(f"q = {q:g}: ratio {got:.4f} (claim {factor(q):.4f})")
    name = "correlation" if which == "corr" else "mutual information (binned)"
    detail = (
        f"{name} of 6 zero-mean Gaussian units, {n} samples × {n_masks} dropout masks; "
        f"one standard error of the ratio = {se:.2g}; " + "; ".join(parts)
    )
    return Exact(claim, "ratio_error_se", worst / se, 1, detail)


def check_ic_corr(
    seed: int = 0, *, factor: Callable[[float], float] = lambda q: q, n: int = 2048, n_masks=8
) -> Exact:
    """IC-CORR: dropout with keep probability q on zero-mean units gives corr(x̂_i, x̂_j) =
    q · corr(x_i, x_j) in expectation over masks. The ratio is estimated from n · n_masks rows;
    a sample correlation has standard error ≈ (1 − ρ²)/√N, so the tolerance is 4 of them
    (averaged over pairs as the ratio's slope weights them). Passing ``factor=lambda q: q**2``
    shows the check can fail."""
    return _ic_check("IC-CORR", "corr", seed, factor, n, n_masks)


def check_ic_mi(
    seed: int = 0, *, factor: Callable[[float], float] = lambda q: q**2, n: int = 2048, n_masks=8
) -> Exact:
    """IC-MI: for inputs with no mass at 0, I(x̂_i; x̂_j) = q² · I(x_i; x_j). Binned MI (same bins
    before and after, the dropout atom in a bin of its own); the tolerance is 4 standard errors
    of the Gaussian MI estimate (≈ |ρ|/√N by the delta method), relative to the MI. Passing
    ``factor=lambda q: q`` shows the check can fail."""
    return _ic_check("IC-MI", "mi", seed, factor, n, n_masks)


_CHECKS = {
    "SI-GROWTH": check_si_growth,
    "SPAN-ORTH": check_span_orth,
    "IC-CORR": check_ic_corr,
    "IC-MI": check_ic_mi,
}


def exact_check(claim: str, seed: int = 0) -> Exact:
    """The evidence of one exact claim on the problem of `seed`. BN-GRAD, BN-HESS, WS-GRAD and
    SI-ORTH come from `run_exact_checks` (the library's layers against the explicit float64
    forward); SI-GROWTH, SPAN-ORTH, IC-CORR and IC-MI from the checks above. The global RNG
    state is untouched."""
    if claim in _CHECKS:
        return _CHECKS[claim](seed)
    checks = [c for c in run_exact_checks(seed) if c.claim == claim]
    if not checks:
        raise ValueError(f"unknown exact claim {claim!r}; valid: {', '.join(EXACT_CLAIMS)}")
    return from_identity(claim, checks)


def exact_checks(seed: int = 0) -> list[Exact]:
    """Every exact claim's evidence, in `EXACT_CLAIMS` order (a few seconds on a CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny problems: a thread pool only adds wake-up latency
    try:
        return [exact_check(claim, seed) for claim in EXACT_CLAIMS]
    finally:
        torch.set_num_threads(threads)
