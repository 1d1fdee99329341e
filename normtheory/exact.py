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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from normtheory.evidence import Exact
from normtheory.measure.dropout import dropout_ratios
from normtheory.measure.identities import IdentityCheck, IdentityShapes, run_exact_checks
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


@dataclass(frozen=True)
class ExactScale:
    """The sizes of every exact claim's problem (`exact_check`'s ``scale``): random float64
    values in the shapes of a network's layers on a dataset. The identities hold for any input;
    what the size changes is the floating-point error the registered tolerance must absorb
    (sums over m = N·H·W values per channel) and the standard error of the dropout ratios.

    Attributes:
        identities: the shapes of BN-GRAD, BN-HESS, WS-GRAD and SI-ORTH (`IdentityShapes`).
        rows, features, width: SI-GROWTH's BN MLP (features → width → width → 3) on (rows,
            features) inputs, and SPAN-ORTH's (its inputs live in R^features).
        span_block: SPAN-ORTH's batches come from blocks of this many basis directions (the
            span S has 3 blocks).
        units, samples: IC-CORR / IC-MI: `units` correlated Gaussian units, `samples` samples.
    """

    identities: IdentityShapes = IdentityShapes()
    rows: int = 16
    features: int = 6
    width: int = 8
    span_features: int = 8
    span_width: int = 16
    span_block: int = 1
    units: int = 6
    samples: int = 2048


# "small": the problems of ``normtheory verify`` (seconds); "fashion_mnist" and "cifar10": the
# shapes of the first layers of the standard and paper tiers' nets on their data: a conv of 16
# channels on batches of 32 28×28 grey / 128 32×32 RGB images (ResNet-20's stem), MLPs on the
# flattened images, IC layers of 64 / 128 units.
EXACT_SCALES = {
    "small": ExactScale(),
    "fashion_mnist": ExactScale(
        IdentityShapes(rows=32, features=784, channels=16, grid=(32, 16, 28, 28),
                       images=(32, 1, 28, 28), conv_out=16, gn_channels=64, gn_groups=8),
        rows=32, features=784, width=64, span_features=784, span_width=64, span_block=8,
        units=64,
    ),
    "cifar10": ExactScale(
        IdentityShapes(rows=128, features=3072, channels=16, grid=(128, 16, 32, 32),
                       images=(128, 3, 32, 32), conv_out=16, gn_channels=64, gn_groups=8),
        rows=128, features=3072, width=128, span_features=3072, span_width=128, span_block=16,
        units=128,
    ),
}  # fmt: skip


def exact_scale(scale: str) -> ExactScale:
    """The problem sizes called `scale` (`EXACT_SCALES`); an unknown name raises, listing them."""
    if scale not in EXACT_SCALES:
        raise ValueError(f"unknown exact scale {scale!r}; valid: {', '.join(EXACT_SCALES)}")
    return EXACT_SCALES[scale]


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
    seed: int = 0,
    *,
    lr: float = 0.5,
    weight_decay: float = 0.05,
    growth_term: bool = True,
    scale: ExactScale = ExactScale(),
) -> Exact:
    """SI-GROWTH: one plain-SGD step on every BN-fed weight of a BN MLP (ε = 0, float64), without
    and with coupled weight decay λ: ‖w_{t+1}‖² = (1 − ηλ)²‖w_t‖² + η²‖g_t‖², per output row.
    Error: the largest |residual| / ‖w_{t+1}‖² (`growth_residual`) over rows, weights and λ.

    `growth_term=False` checks the wrong claim that the norm is preserved (no η²‖g‖² term): the
    test that shows this check can fail. `scale` sets the inputs (rows, features) and the
    width (default: 16 × 6 inputs, 8 units)."""
    gen = _gen(seed)
    x = torch.randn(scale.rows, scale.features, generator=gen, dtype=torch.float64)
    y = torch.randint(3, (scale.rows,), generator=gen)
    worst, parts = 0.0, []
    for wd in (0.0, weight_decay):
        model = _bn_mlp(seed, scale.features, scale.width)
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
    detail = (
        f"one SGD step (η = {lr:g}) on the BN-fed weights of a BN MLP (ε = 0, float64"
        + (
            ""
            if scale == ExactScale()
            else f"; {scale.rows} × {scale.features} inputs, {scale.width} units"
        )
        + "); "
    )
    return Exact("SI-GROWTH", "rel_error", worst, 1, detail + "; ".join(parts))


def _span_batches(
    seed: int, steps: int, size: int = 16, dim: int = 8, block: int = 1
) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """`steps` batches (size, dim) whose spans differ and overlap, their labels, and an
    orthonormal basis B (dim, 3·block) of the span of all of them.

    With B1, B2, B3 the three blocks of `block` columns of B, batch t is drawn from family
    t mod 3: span[B1 B2], span[B2 B3], then span(B1 − B3) (a mix of the first two, in neither).
    No batch spans all of span(B); with 20 steps the last one is from span[B2 B3] and misses
    B1. (The defaults: single directions b1, b2, b3 in R⁸.)"""
    gen = _gen(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, 3 * block, generator=gen, dtype=torch.float64))
    b1, b2, b3 = basis[:, :block], basis[:, block : 2 * block], basis[:, 2 * block :]
    families = (
        torch.cat([b1, b2], 1),
        torch.cat([b2, b3], 1),
        b1 - b3,
    )  # (dim, k) each
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
    scale: ExactScale = ExactScale(),
) -> Exact:
    """SPAN-ORTH: the first layer of a BN MLP (`build_model`, ε = 0, float64) is trained for
    `steps` steps of SGD (plain, with momentum 0.9, and with weight decay λ), batch t drawn from
    one of three overlapping subspaces of R⁸ (`_span_batches`), together spanning a 3-dim S.
    The library's `InputSpan` is fed every batch; its complement projector P⊥ gives the left
    side W_t·P⊥. The right side is the claim on the known span: shrink(η, λ)^t · W_0·Q⊥ with
    Q⊥ = I − B Bᵀ from the basis B of S the batches were drawn from (shrink = 1 − ηλ with
    decay, 1 without). A span that forgets earlier batches (or never adds later ones) puts
    directions the weight moved in into P⊥, and the sides disagree. Error: the largest
    ‖W_t P⊥ − predicted‖ / ‖predicted‖. Passing another `shrink` shows the check can fail.
    `scale` sets the input dimension, the blocks of S, the batch size and the width (default:
    R⁸, S of dimension 3, batches of 16, 16 units)."""
    dim = scale.span_features
    xs, ys, basis = _span_batches(seed, steps, scale.rows, dim, scale.span_block)
    oracle = torch.eye(dim, dtype=torch.float64) - basis @ basis.T  # (dim, dim), Q⊥
    worst, parts = 0.0, []
    for tag, momentum, wd in (
        ("SGD", 0.0, 0.0),
        ("SGD+momentum", 0.9, 0.0),
        ("SGD+WD", 0.0, weight_decay),
    ):
        model = _bn_mlp(seed, in_features=dim, width=scale.span_width)
        layer = model.get_submodule("fc1")
        span = InputSpan(layer)
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
        w0 = layer.weight.detach().clone()
        for x, y in zip(xs, ys):
            span.update(x)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        got = layer.weight.detach() @ span.complement_projector()  # (width, dim)
        predicted = (shrink(lr, wd) ** steps if wd else 1.0) * (w0 @ oracle)
        err = float((got - predicted).norm() / predicted.norm())
        worst = max(worst, err)
        parts.append(f"{tag}: {err:.2g}")
    where = (
        "span{b1, b2}, span{b2, b3}, span{b1 − b3} in R⁸"
        if scale == ExactScale()
        else f"span[B1 B2], span[B2 B3], span(B1 − B3) (blocks of {scale.span_block}) in "
        f"R^{dim}, batches of {scale.rows}"
    )
    detail = (
        f"first layer of a BN MLP, batches from {where} in turn, {steps} steps (η = {lr:g}, "
        f"λ = {weight_decay:g}); " + "; ".join(parts)
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
    d: int = 6,
) -> Exact:
    """The dropout ratio (`dropout_ratios`, slope through the origin over all pairs) at every q
    of `KEEPS`, against factor(q), for `d` units. Error: the largest |ratio − factor(q)| over q,
    compared with 4 standard errors of the ratio for n · n_masks samples (see `check_ic_corr`)."""
    units = _zero_mean_units(seed, n, d)
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
        f"{name} of {d} zero-mean Gaussian units, {n} samples × {n_masks} dropout masks; "
        f"one standard error of the ratio = {se:.2g}; " + "; ".join(parts)
    )
    return Exact(claim, "ratio_error_se", worst / se, 1, detail)


def check_ic_corr(
    seed: int = 0,
    *,
    factor: Callable[[float], float] = lambda q: q,
    n: int = 2048,
    n_masks=8,
    d: int = 6,
) -> Exact:
    """IC-CORR: dropout with keep probability q on zero-mean units gives corr(x̂_i, x̂_j) =
    q · corr(x_i, x_j) in expectation over masks. The ratio is estimated from n · n_masks rows;
    a sample correlation has standard error ≈ (1 − ρ²)/√N, so the tolerance is 4 of them
    (averaged over pairs as the ratio's slope weights them). Passing ``factor=lambda q: q**2``
    shows the check can fail."""
    return _ic_check("IC-CORR", "corr", seed, factor, n, n_masks, d)


def check_ic_mi(
    seed: int = 0,
    *,
    factor: Callable[[float], float] = lambda q: q**2,
    n: int = 2048,
    n_masks=8,
    d: int = 6,
) -> Exact:
    """IC-MI: for inputs with no mass at 0, I(x̂_i; x̂_j) = q² · I(x_i; x_j). Binned MI (same bins
    before and after, the dropout atom in a bin of its own); the tolerance is 4 standard errors
    of the Gaussian MI estimate (≈ |ρ|/√N by the delta method), relative to the MI. Passing
    ``factor=lambda q: q`` shows the check can fail."""
    return _ic_check("IC-MI", "mi", seed, factor, n, n_masks, d)


_CHECKS = {
    "SI-GROWTH": check_si_growth,
    "SPAN-ORTH": check_span_orth,
    "IC-CORR": check_ic_corr,
    "IC-MI": check_ic_mi,
}
# The keywords that give each check of `_CHECKS` the sizes of a scale other than "small" (at
# "small" a check is called with the seed alone, as `verify` always called it).
_SCALED = {
    "SI-GROWTH": lambda s: {"scale": s},
    "SPAN-ORTH": lambda s: {"scale": s},
    "IC-CORR": lambda s: {"n": s.samples, "d": s.units},
    "IC-MI": lambda s: {"n": s.samples, "d": s.units},
}


def exact_check(claim: str, seed: int = 0, scale: str = "small") -> Exact:
    """The evidence of one exact claim on the problem of `seed` at `scale` (`EXACT_SCALES`).
    BN-GRAD, BN-HESS, WS-GRAD and SI-ORTH come from `run_exact_checks` (the library's layers
    against the explicit float64 forward); SI-GROWTH, SPAN-ORTH, IC-CORR and IC-MI from the
    checks above. The global RNG state is untouched."""
    sizes = exact_scale(scale)
    if claim in _CHECKS:
        return _CHECKS[claim](seed, **({} if scale == "small" else _SCALED[claim](sizes)))
    checks = [c for c in run_exact_checks(seed, sizes.identities) if c.claim == claim]
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
