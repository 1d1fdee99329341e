"""Hessian spectrum of a network's loss: extreme eigenvalues and spectral density by Lanczos.

All curvature measurements (this module, `normtheory.measure.trace` and
`normtheory.measure.landscape`) are pure: they take ``(model, loss_fn, data)`` and leave the
model, its ``.grad``, buffers, train/eval flags and every RNG stream exactly as found. The loss
they measure is fixed for the whole call (`normtheory.measure._functional.fixed_loss`): in
``mode="train"`` norms use batch statistics without updating running statistics, and dropout
masks are drawn once. All vectors live on the model's device; only tridiagonal matrices go to
the CPU. Each result records its cost in Hessian-vector products (``n_hvp``) or gradients
(``n_grad``). The Krylov recurrence is `normtheory.measure.lanczos.Lanczos`.

Common arguments:
    model: the network.
    loss_fn: ``loss_fn(model, batch)`` or ``loss_fn(outputs, targets)`` -> mean loss of a
        batch (both forms: `normtheory.batches`).
    data: one batch of any structure (a tensor, ``(inputs, targets)``, a dict, a Hugging Face
        ``BatchEncoding``, nested) or a re-iterable of batches (a list, a ``DataLoader``): the
        dataset-wide curvature. The loss is Σ_b n_b L_b / Σ_b n_b, the mean over every example
        (a partial last batch weighs by its size); batches are streamed, one on the device at a
        time, each Hessian-vector product accumulated batch by batch. In ``mode="train"`` each
        batch is normalized with its own batch statistics (as in training; BN's Hessian over a
        DataLoader is the mean of the per-batch Hessians, not that of one giant batch). The
        batches must be the same on every pass: a list, or a DataLoader without a generator of
        its own (a shuffling one draws its order from the global RNG, reset before each pass).
    mode: ``"train"`` or ``"eval"``.
    params: None (all parameters with ``requires_grad``) or names of parameters or modules,
        whose Hessian block is measured (per-layer spectra).
    seed: seed of the local generator for probe vectors (the global RNG is never used).
    metric: None, or a per-parameter scale D ``{name: tensor}`` (parameters not named: 1), e.g.
        `normtheory.measure.scale_invariant.invariant_metric`: the spectrum is then that of
        D H D, the Hessian in the coordinates u = D⁻¹ w (D held fixed), which is invariant to
        rescaling scale-invariant weights when D is their size.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from normtheory.checks import check_choice, check_int
from normtheory.measure._functional import LossFn, fixed_loss, generator, rademacher
from normtheory.measure.lanczos import Lanczos

WHICH = ("largest", "magnitude", "smallest")
_ZERO_FLOOR = 1e-3  # Ritz values below this fraction of max |θ| get an absolute tolerance

Params = str | Iterable[str] | None


@dataclass(frozen=True)
class EigenResult:
    """Extreme Hessian eigenpairs.

    Attributes:
        values: (k,) float64 on CPU, sorted as asked (descending for ``largest`` and
            ``magnitude``, by |λ| for the latter; ascending for ``smallest``).
        residuals: (k,) true residuals ‖Hv − λv‖ of the returned pairs (‖v‖ = 1).
        n_hvp: Hessian-vector products spent, including the k for the true residuals.
        converged: every residual ≤ tol · max(|λ|, 1e-3 · max |θ|).
        vectors: (n, k) eigenvectors on the model's device, if asked for.
    """

    values: Tensor
    residuals: Tensor
    n_hvp: int
    converged: bool
    vectors: Tensor | None = None


@dataclass(frozen=True)
class DensityResult:
    """Spectral density by stochastic Lanczos quadrature.

    Attributes:
        nodes: (n_runs, m) Ritz values of each run, float64 CPU.
        weights: (n_runs, m) quadrature weights, each row sums to 1.
        grid: (G,) points where the smoothed density is evaluated.
        density: (G,) Gaussian-smoothed density averaged over runs; integrates to 1 on grid.
        n_hvp: Hessian-vector products spent.
    """

    nodes: Tensor
    weights: Tensor
    grid: Tensor
    density: Tensor
    n_hvp: int


def hessian_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    data: object,
    *,
    mode: str = "train",
    params: Params = None,
    k: int = 1,
    which: str = "largest",
    tol: float = 1e-4,
    max_hvp: int | None = None,
    return_vectors: bool = False,
    verify: bool = False,
    seed: int = 0,
    metric: Mapping[str, Tensor] | None = None,
    start: Tensor | None = None,
) -> EigenResult:
    """k extreme eigenvalues of the Hessian by Lanczos with full reorthogonalization.

    The Krylov space grows one Hessian-vector product at a time until the k wanted Ritz pairs
    (θ_i, y_i) have residual estimates β_m |s_{m,i}| ≤ tol · max(|θ_i|, 1e-3 · max_j |θ_j|)
    (see `normtheory.measure.lanczos`). With full reorthogonalization the Lanczos relation
    H Q_m = Q_m T_m + β_m q_{m+1} e_mᵀ holds to rounding, so that estimate *is* the residual
    ‖H y_i − θ_i y_i‖ up to rounding; ``verify=True`` spends k more products to compute the
    true residuals (and `converged` from them) anyway. A residual r bounds the eigenvalue error by r, and by r²/gap once the
    pair is isolated (Parlett, The Symmetric Eigenvalue Problem, Thm 11.7.1), so relative
    errors are usually far below tol. Unlike power iteration with deflation (PyHessian),
    all k pairs come from one Krylov space, in order. Exactly repeated eigenvalues are found
    once per copy only when n is small enough for the space to be exhausted.

    Args:
        k: number of eigenvalues, 1 <= k <= n.
        which: ``"largest"`` (algebraic), ``"magnitude"`` (largest |λ|) or ``"smallest"``.
        tol: relative residual tolerance.
        max_hvp: cap on all Hessian-vector products, the k verification products included;
            default min(n, 20k + 200) (+ k with `verify`). Stopping at the cap gives
            ``converged=False``.
        return_vectors: also return the unit eigenvectors (n, k) on the model's device.
        verify: compute the true residuals with k extra products instead of reporting the
            Lanczos estimates β_m |s_{m,i}|.
        metric: eigenpairs of D H D instead of H (see the module docstring); vectors are in
            the u coordinates.
        start: the Lanczos start vector (n,), or vectors (n, j) whose sum starts it, e.g. the
            eigenvectors of a previous call (warm start: along training they turn slowly, so
            the start is nearly in the wanted invariant subspace and few products reach
            `tol`). Default: a random vector from `seed`. A start (nearly) orthogonal to the
            wanted eigenvectors finds others: Lanczos returns the extreme Ritz values of the
            Krylov space it built, and a warm start's space is small.
    """
    check_choice("which", which, WHICH)
    with fixed_loss(model, loss_fn, data, mode=mode, params=params) as f:
        n = f.dim
        check_int("k", k, 1, n)  # n: the number of parameters
        reserve = k if verify else 0  # products kept back for the true residuals
        cap = min(n, 20 * k + 200) + reserve if max_hvp is None else int(max_hvp)
        if cap < k + reserve:
            raise ValueError(f"max_hvp must be at least {k + reserve} here, got {max_hvp!r}")
        d = f.diagonal(metric)
        matvec = f.hvp if d is None else lambda v: d * f.hvp(d * v)  # D H D v
        gen = generator(f.device, seed)
        lz = Lanczos(matvec, _start(start, n, gen, f.dtype, f.device), gen)
        while lz.steps < min(n, cap - reserve):
            lz.step()
            if lz.steps >= k:
                theta, s = lz.ritz()
                idx = _wanted(theta, k, which)
                estimate = lz.beta_last * np.abs(s[-1, idx])
                if np.all(estimate <= tol * _scale(theta, idx)):
                    break
        theta, s = lz.ritz()
        idx = _wanted(theta, k, which)
        coef = torch.as_tensor(s[:, idx], dtype=f.dtype, device=f.device)  # (m, k)
        vectors = lz.basis @ coef  # (n, k)
        vectors = vectors / torch.linalg.vector_norm(vectors, dim=0)
        values = torch.as_tensor(theta[idx], dtype=torch.float64)
        if verify:
            residuals = torch.stack(
                [
                    torch.linalg.vector_norm(matvec(y) - float(lam) * y)
                    for y, lam in zip(vectors.T, values)
                ]
            ).to(device="cpu", dtype=torch.float64)
        else:
            beta = 0.0 if lz.steps >= n else lz.beta_last
            residuals = torch.as_tensor(beta * np.abs(s[-1, idx]), dtype=torch.float64)
        converged = bool(torch.all(residuals <= tol * torch.as_tensor(_scale(theta, idx))))
        return EigenResult(
            values=values,
            residuals=residuals,
            n_hvp=f.n_hvp,
            converged=converged,
            vectors=vectors if return_vectors else None,
        )


def _start(start: Tensor | None, n: int, gen: torch.Generator, dtype, device) -> Tensor:
    """The Lanczos start vector (n,): random, or the given vector / sum of vectors."""
    if start is None:
        return torch.randn(n, generator=gen, dtype=dtype, device=device)
    v = start.detach().to(device=device, dtype=dtype)
    v = v.sum(dim=1) if v.ndim == 2 else v
    if v.shape != (n,) or not torch.isfinite(v).all() or not torch.linalg.vector_norm(v) > 0:
        raise ValueError(
            f"start must be a finite nonzero vector (n,) or vectors (n, j) with n={n}, got "
            f"shape {tuple(start.shape)}"
        )
    return v


def _wanted(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices of the k wanted Ritz values of ascending `theta`, in the order reported."""
    if which == "largest":
        return np.arange(len(theta) - 1, len(theta) - 1 - k, -1)
    if which == "smallest":
        return np.arange(k)
    return np.argsort(-np.abs(theta), kind="stable")[:k]


def _scale(theta: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """max(|θ_i|, 1e-3 · max |θ|): relative accuracy, absolute near zero."""
    floor = max(_ZERO_FLOOR * np.abs(theta).max(), np.finfo(np.float64).tiny)
    return np.maximum(np.abs(theta[idx]), floor)


def hessian_density(
    model: nn.Module,
    loss_fn: LossFn,
    data: object,
    *,
    mode: str = "train",
    params: Params = None,
    n_iter: int = 100,
    n_runs: int = 1,
    grid_size: int = 512,
    sigma: float | None = None,
    seed: int = 0,
) -> DensityResult:
    """Spectral density of H by stochastic Lanczos quadrature (SLQ).

    Per run (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019, Sec. 2): a Rademacher
    vector v, ‖v‖ = 1, and m = min(n_iter, n) Lanczos steps give T_m = S diag(θ) Sᵀ; the
    quadrature nodes are θ_i and the weights w_i = S_{1,i}², so that Σ_i w_i f(θ_i) ≈ vᵀ f(H) v
    (exact for polynomials of degree < 2m) and E_v[vᵀ f(H) v] = tr f(H) / n. The density is
    φ(t) = (1/R) Σ_runs Σ_i w_i 𝒩(t; θ_i, σ²) on a uniform grid over [min θ − 4σ, max θ + 4σ],
    renormalized by the trapezoid rule to integrate to 1.

    Args:
        n_iter: Lanczos steps per run (capped at n).
        n_runs: independent start vectors R.
        grid_size: grid points G (>= 2).
        sigma: Gaussian kernel width; default 1 % of the nodes' range (max θ − min θ over all
            runs), or 1 % of max(|θ|, 1) when the range is zero. The grid spacing is then
            about σ / 5; a much smaller sigma needs a larger grid_size to be resolved.
    """
    check_int("n_iter", n_iter)
    check_int("n_runs", n_runs)
    check_int("grid_size", grid_size, 2)
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    with fixed_loss(model, loss_fn, data, mode=mode, params=params) as f:
        gen = generator(f.device, seed)
        like = torch.empty(0, dtype=f.dtype, device=f.device)
        m = min(n_iter, f.dim)
        nodes, weights = np.empty((n_runs, m)), np.empty((n_runs, m))
        for run in range(n_runs):
            lz = Lanczos(f.hvp, rademacher((f.dim,), like, gen), gen)
            for _ in range(m):
                lz.step()
            theta, s = lz.ritz()
            nodes[run], weights[run] = theta, s[0] ** 2
        n_hvp = f.n_hvp
    weights /= weights.sum(axis=1, keepdims=True)  # rounding only: S is orthogonal
    lo, hi = nodes.min(), nodes.max()
    if sigma is None:
        sigma = 0.01 * (hi - lo) if hi > lo else 0.01 * max(abs(hi), 1.0)
    grid = np.linspace(lo - 4 * sigma, hi + 4 * sigma, grid_size)  # (G,)
    z = (grid[:, None, None] - nodes[None]) / sigma  # (G, R, m)
    kernel = np.exp(-0.5 * z**2) / (sigma * np.sqrt(2 * np.pi))
    density = (kernel * weights[None]).sum(axis=2).mean(axis=1)  # (G,)
    density /= np.sum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))  # trapezoid rule
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return DensityResult(as_t(nodes), as_t(weights), as_t(grid), as_t(density), n_hvp)


def smoothed_density(nodes, weights, grid, sigma: float) -> np.ndarray:
    """A quadrature rule Σ_i w_i δ(t − θ_i) smoothed by a Gaussian kernel of width σ, on `grid`:

        φ(t) = Σ_i w_i 𝒩(t; θ_i, σ²),  𝒩(t; θ, σ²) = exp(−(t − θ)² / 2σ²) / (σ √(2π))

    (one run of `hessian_density`'s φ, without its renormalization: ∫ φ = Σ_i w_i).

    Args:
        nodes, weights: θ_i and w_i, 1-D of one length (e.g. the stored nodes and weights of
            one SLQ run).
        grid: the points t, 1-D.
        sigma: the kernel width (> 0).

    Returns:
        φ on `grid`, shape (G,).
    """
    nodes, weights, grid = (np.asarray(a, dtype=float) for a in (nodes, weights, grid))
    kernel = np.exp(-0.5 * ((grid[:, None] - nodes[None, :]) / sigma) ** 2) / (
        sigma * np.sqrt(2 * np.pi)
    )  # (G, m)
    return kernel @ weights
