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
    is std(T_i) / √s, the paper's error estimate (the T_i are exchangeable but not
    independent; `bench/trace_calibration.py` measures how often T ± 2 stderr covers tr(H)).
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
    """XTrace with s test vectors (2s products): the mean of the T_i and its stderr.

    Notation of `hessian_trace`; W = QᵀΩ, A = QᵀZ = QᵀHQ, U = R⁻ᵀ with unit columns u_i.
    With w_i = W e_i and the coordinates p_i = (I − u_i u_iᵀ) w_i of Q_(i)Q_(i)ᵀ ω_i in Q:
    tr(Q_(i)ᵀ H Q_(i)) = tr(A) − u_iᵀ A u_i, and since H ω_i = y_i = Q R e_i,
    r_iᵀ H r_i = w_iᵀ R e_i − 2 p_iᵀ R e_i + p_iᵀ A p_i and ‖r_i‖² = n − ‖p_i‖².
    """
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
    uw = np.einsum("ji,ji->i", u, w)  # u_iᵀ w_i
    p = w - u * uw  # (s, s), column i: p_i
    inside = np.trace(a) - np.einsum("ji,jk,ki->i", u, a, u)
    quad = np.einsum("ji,ji->i", w - 2 * p, r) + np.einsum("ji,jk,ki->i", p, a, p)
    scale = (n - s + 1) / (n - np.einsum("ji,ji->i", p, p))
    estimates = inside + scale * quad  # (s,) the T_i
    value = float(estimates.mean())
    stderr = float(estimates.std(ddof=1) / np.sqrt(s)) if s > 1 else float("nan")
    return value, stderr
