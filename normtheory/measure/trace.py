"""Stochastic estimates of the trace of a network's loss Hessian: Hutchinson and Hutch++.

Pure, with the fixed loss and the common arguments of `normtheory.measure.curvature`.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from normtheory.checks import check_choice, check_int
from normtheory.measure._functional import FixedLoss, LossFn, fixed_loss, generator, rademacher
from normtheory.measure.curvature import Params

TRACE_METHODS = ("hutch++", "hutchinson")
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

    ``hutchinson`` (Hutchinson 1989): tr(H) ≈ (1/m) Σ_i z_iᵀ H z_i with Rademacher z_i;
    stderr = sample std / √m.

    ``hutch++`` (Meyer, Musco, Musco & Woodruff 2021, Alg. 1): with s = ⌊m/3⌋ Rademacher
    columns S, Q = qr(H S) (s products), tr(H) = tr(Qᵀ H Q) (exact, s products) + Hutchinson on
    (I − QQᵀ) H (I − QQᵀ) with the remaining m − 2s probes. The stderr is that of the residual
    Hutchinson part. When s ≥ n the sketch spans everything: exact, stderr 0, 2n products.
    The sketch removes the top of the spectrum, so the variance drops when eigenvalues decay.

    Args:
        method: ``"hutch++"`` or ``"hutchinson"``.
        n_hvp: budget of Hessian-vector products (>= 2 for hutchinson, >= 4 for hutch++).
        rtol: stop early once stderr ≤ rtol · |value|, checked every 10 (residual) probes.
    """
    check_choice("method", method, TRACE_METHODS)
    minimum = 4 if method == "hutch++" else 2
    check_int(f"n_hvp (for {method})", n_hvp, minimum)
    with fixed_loss(model, loss_fn, data, mode=mode, params=params) as f:
        gen = generator(f.device, seed)
        like = torch.empty(0, dtype=f.dtype, device=f.device)
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
