"""Stochastic estimates of the trace of a network's loss Hessian: XTrace, Hutch++, Hutchinson.

Pure, with the fixed loss and the common arguments of `normtheory.measure.curvature`.
"""

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from torch import Tensor, nn

from normtheory.checks import check_choice, check_int
from normtheory.measure._functional import FixedLoss, LossFn, fixed_loss, generator, rademacher
from normtheory.measure.curvature import Params

TRACE_METHODS = ("xtrace", "hutch++", "hutchinson")
_TRACE_CHUNK = 10  # probes between early-stopping checks


@dataclass(frozen=True)
class TraceResult:
    """Stochastic trace estimate: value ± stderr, the cost, and the estimator used."""

    value: float
    stderr: float
    n_hvp: int
    method: str


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    data: object,
    *,
    mode: str = "train",
    params: Params = None,
    method: str = "hutch++",
    n_hvp: int = 100,
    rtol: float | None = None,
    seed: int = 0,
) -> TraceResult:
    """Stochastic estimate of tr(H).

    ``xtrace`` (Epperly, Tropp & Webber 2024, "XTrace: making the most of every sample in
    stochastic trace estimation", SIMAX 45(1)): s = ⌊m/2⌋ test vectors ω_i, uniform on the
    sphere of radius √n, Y = HΩ = QR (s products), Z = HQ (s products). Each ω_i is used
    both ways: the Hutch++ estimate with the sketch of the *other* s − 1 vectors,

        T_i = tr(Q_(i)ᵀ H Q_(i)) + c_i · r_iᵀ H r_i,   r_i = (I − Q_(i)Q_(i)ᵀ) ω_i,

    Q_(i) an orthonormal basis of range(Y without column i), is unbiased, and XTrace is their
    mean T = (1/s) Σ T_i (the exchangeability principle). Q_(i)Q_(i)ᵀ = Q(I − u_i u_iᵀ)Qᵀ with
    u_i the i-th column of R⁻ᵀ normalized (it is orthogonal in range(Q) to the other columns
    of Y), so every T_i comes from the s×s matrices QᵀZ, QᵀΩ and R at no extra product. The
    factor c_i = (n − s + 1) / ‖r_i‖² is the paper's normalization: it puts the residual
    vector on the sphere of the complement's dimension, which lowers the variance. The stderr
    is the jackknife's, √((s − 1)/s · Σ_j (T_(j) − T̄_(·))²) with T_(j) XTrace on the s − 1
    vectors other than ω_j (from the same s × s matrices, no extra product), which by the
    Efron–Stein inequality does not underestimate the variance on average. The paper's
    std(T_i)/√s treats the T_i as independent, but they share their vectors: its 2-SE interval
    covered tr(H) in 79–91 % of 300 draws on synthetic spectra (1/k, 1/k², indefinite, spikes
    over noise, e^(−k/20); s = 15 and 30), the jackknife's in 95–100 %, 1.2–3.2× wider; on a
    BN convnet's Hessian 89 % against 98 % at 30 products (`bench/trace_calibration.py`).
    Exact, stderr 0, when s = n.
    XNysTrace, its cheaper sibling, needs H ⪰ 0 and is not offered: loss Hessians are not.

    ``hutchinson`` (Hutchinson 1989): tr(H) ≈ (1/m) Σ_i z_iᵀ H z_i with Rademacher z_i;
    stderr = sample std / √m.

    ``hutch++`` (Meyer, Musco, Musco & Woodruff 2021, Alg. 1): with s = ⌊m/3⌋ Rademacher
    columns S, Q = qr(H S) (s products), tr(H) = tr(Qᵀ H Q) (exact, s products) + Hutchinson on
    (I − QQᵀ) H (I − QQᵀ) with the remaining m − 2s probes. The stderr is that of the residual
    Hutchinson part. When s ≥ n the sketch spans everything: exact, stderr 0, 2n products.
    The sketch removes the top of the spectrum, so the variance drops when eigenvalues decay.

    Args:
        method: ``"xtrace"``, ``"hutch++"`` or ``"hutchinson"``.
        n_hvp: budget of Hessian-vector products (>= 2 for hutchinson, >= 4 for the others);
            xtrace spends 2⌊n_hvp/2⌋ of them (at most 2n).
        rtol: stop early once stderr ≤ rtol · |value|, checked every 10 (residual) probes;
            hutch++ and hutchinson only (xtrace uses all its vectors at once).
    """
    check_choice("method", method, TRACE_METHODS)
    minimum = 2 if method == "hutchinson" else 4
    check_int(f"n_hvp (for {method})", n_hvp, minimum)
    if method == "xtrace" and rtol is not None:
        raise ValueError("rtol (early stopping) is for hutch++ and hutchinson, not xtrace")
    with fixed_loss(model, loss_fn, data, mode=mode, params=params) as f:
        gen = generator(f.device, seed)
        like = torch.empty(0, dtype=f.dtype, device=f.device)
        if method == "xtrace":
            value, stderr = _xtrace(f, n_hvp // 2, gen)
            return TraceResult(value=value, stderr=stderr, n_hvp=f.n_hvp, method=method)
        exact, probes, basis = 0.0, n_hvp, None
        if method == "hutch++":
            s = min(n_hvp // 3, f.dim)
            sketch = torch.stack([f.hvp(z) for z in rademacher((s, f.dim), like, gen)], dim=1)
            basis = torch.linalg.qr(sketch).Q  # (n, s)
            exact = sum(torch.dot(q, f.hvp(q)).item() for q in basis.T)
            probes = 0 if s == f.dim else n_hvp - 2 * s
        quads = _hutchinson(f, probes, basis, like, gen, exact, rtol)
        m = len(quads)
        value = exact + (float(np.mean(quads)) if m else 0.0)
        if m > 1:
            stderr = float(np.std(quads, ddof=1) / np.sqrt(m))
        else:  # no residual probes: the sketch was exact
            stderr = 0.0 if probes == 0 else float("nan")
        return TraceResult(value=value, stderr=stderr, n_hvp=f.n_hvp, method=method)


def _hutchinson(
    f: FixedLoss,
    probes: int,
    basis: Tensor | None,
    like: Tensor,
    gen: torch.Generator,
    offset: float,
    rtol: float | None,
) -> list[float]:
    """Quadratic forms zᵀ P H P z with P = I − QQᵀ (or I), up to `probes` of them."""
    quads: list[float] = []
    while len(quads) < probes:
        z = rademacher((f.dim,), like, gen)
        if basis is not None:
            z = z - basis @ (basis.T @ z)
        quads.append(torch.dot(z, f.hvp(z)).item())
        m = len(quads)
        if rtol is not None and m >= _TRACE_CHUNK and m % _TRACE_CHUNK == 0:
            stderr = np.std(quads, ddof=1) / np.sqrt(m)
            if stderr <= rtol * abs(offset + np.mean(quads)):
                break
    return quads


def _xtrace(f: FixedLoss, s: int, gen: torch.Generator) -> tuple[float, float]:
    """XTrace with s test vectors (2s products): the mean of the T_i and its jackknife stderr."""
    return _xtrace_summary(*_xtrace_parts(f, s, gen), f.dim)


def _xtrace_summary(estimates: np.ndarray, jackknife: np.ndarray, n: int) -> tuple[float, float]:
    """XTrace's value, the mean of the T_i, and its jackknife stderr from the leave-one-out
    means T_(j); exact, stderr 0, when s = n (every T_i is exact: Q_(i) spans n − 1 dimensions
    and r_i the last one)."""
    value, s = float(estimates.mean()), len(estimates)
    if s == n:
        return value, 0.0
    return value, float(np.sqrt((s - 1) / s * np.sum((jackknife - jackknife.mean()) ** 2)))


def _xtrace_parts(f: FixedLoss, s: int, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The T_i and the leave-one-out means T_(j) of XTrace with min(s, n) test vectors (2s
    products), in the notation of `hessian_trace`: Y = HΩ = QR, W = QᵀΩ, A = QᵀZ = QᵀHQ with
    Z = HQ, U = R⁻ᵀ with unit columns u_i (`_xtrace_estimates`)."""
    n = f.dim
    s = min(s, n)
    omega = torch.randn((n, s), generator=gen, dtype=f.dtype, device=f.device)  # (n, s)
    omega = omega * (np.sqrt(n) / torch.linalg.vector_norm(omega, dim=0))  # on the √n-sphere
    sketch = torch.stack([f.hvp(w) for w in omega.T], dim=1)  # Y = HΩ (n, s)
    q, r = torch.linalg.qr(sketch)  # (n, s), (s, s)
    z = torch.stack([f.hvp(c) for c in q.T], dim=1)  # Z = HQ (n, s)

    def small(t: Tensor) -> np.ndarray:
        return t.detach().to(device="cpu", dtype=torch.float64).numpy()

    a, w, r = small(q.T @ z), small(q.T @ omega), small(r)  # (s, s) each
    a = (a + a.T) / 2  # QᵀHQ is symmetric; rounding is not
    u = scipy.linalg.solve_triangular(r, np.eye(s), lower=False).T  # R⁻ᵀ (s, s)
    u /= np.linalg.norm(u, axis=0)
    return _xtrace_estimates(n, a, w, r, u)


def _xtrace_estimates(
    n: int, a: np.ndarray, w: np.ndarray, r: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The s estimates T_i of XTrace and its s leave-one-out means T_(j) (XTrace on the s − 1
    test vectors other than ω_j), all from the s × s matrices of `_xtrace` (dimension n).

    With the vectors other than ω_i and ω_j, Q_(ij) spans the complement in range(Q) of u_i and
    e = (u_j − c u_i)/d (c = u_iᵀu_j, d = √(1 − c²)), so Q_(ij)Q_(ij)ᵀ ω_i = Q(w_i − v) with
    v = α u_i + β e, α = u_iᵀw_i, β = eᵀw_i; the residual r = Qv + (ω_i − Q w_i) has
    rᵀHr = vᵀAv + 2 vᵀ(R e_i − A w_i) + κ_i, κ_i = w_iᵀA w_i − w_iᵀR e_i, and
    ‖r‖² = α² + β² + n − ‖w_i‖². T_i is the same with β = 0 (v = α u_i). Everything reduces
    to the s × s products G = UᵀAU, M = UᵀW, N = Uᵀ(R − AW) and C = UᵀU.
    """
    s = a.shape[0]
    g, m, nn, c = u.T @ a @ u, u.T @ w, u.T @ (r - a @ w), u.T @ u
    alpha, g_ii, n_ii = np.diag(m), np.diag(g), np.diag(nn)
    kappa = np.einsum("ji,jk,ki->i", w, a, w) - np.einsum("ji,ji->i", w, r)
    outside = n - np.einsum("ji,ji->i", w, w)  # n − ‖w_i‖²: ω_i's energy outside range(Q)
    trace_a = np.trace(a)
    quad = alpha**2 * g_ii + 2 * alpha * n_ii + kappa
    estimates = trace_a - g_ii + (n - s + 1) / (alpha**2 + outside) * quad
    if s < 2:
        return estimates, np.full(s, np.nan)
    # pairs: axis 0 = i (the estimate), axis 1 = j (the vector left out); c is symmetric
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.sqrt(np.clip(1 - c**2, 0, None))
        beta = (m.T - c * alpha[:, None]) / d  # m.T[i, j] = u_jᵀw_i
        eae = (g_ii[None, :] - 2 * c * g + c**2 * g_ii[:, None]) / d**2
        uae = (g - c * g_ii[:, None]) / d
        eg = (nn.T - c * n_ii[:, None]) / d  # nn.T[i, j] = u_jᵀg_i
        vav = alpha[:, None] ** 2 * g_ii[:, None] + 2 * alpha[:, None] * beta * uae
        vav = vav + beta**2 * eae
        quad2 = vav + 2 * (alpha[:, None] * n_ii[:, None] + beta * eg) + kappa[:, None]
        rr = alpha[:, None] ** 2 + beta**2 + outside[:, None]
        pair = trace_a - g_ii[:, None] - eae + (n - s + 2) / rr * quad2
    np.fill_diagonal(pair, 0.0)
    jackknife = pair.sum(axis=0) / (s - 1)  # T_(j): the mean over i ≠ j
    return estimates, jackknife
