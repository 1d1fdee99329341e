"""Lanczos tridiagonalization with full reorthogonalization, on the device of the operator.

For a symmetric operator H (n x n) and a start vector q₁, m steps build an orthonormal basis
Q_m = [q₁ … q_m] of the Krylov space K_m(H, q₁) and the tridiagonal T_m = Q_mᵀ H Q_m with
diagonal α and off-diagonal β (Lanczos 1950; Golub & Van Loan, Matrix Computations, §10.1):

    H Q_m = Q_m T_m + β_m q_{m+1} e_mᵀ.

Every new vector is orthogonalized against the whole basis twice (classical Gram-Schmidt, twice
is enough: Giraud et al. 2005), which removes the loss of orthogonality of the plain three-term
recurrence (Paige 1972) and with it the spurious copies of converged Ritz values. If the Krylov
space becomes invariant (β_j ≈ 0, e.g. a tiny n or an H with few distinct eigenvalues), the
recurrence restarts with a random vector orthogonal to the basis and T gets a zero off-diagonal:
T stays exactly Q_mᵀ H Q_m, and after n steps its eigenvalues are those of H.

Only T (m x m) leaves the device: its eigenpairs come from `scipy.linalg.eigh_tridiagonal`.
For a Ritz pair (θ_i, y_i = Q_m s_i) the residual is ‖H y_i − θ_i y_i‖ = β_m |s_{m,i}|.
Limitation: a single start vector finds one copy of each distinct eigenvalue (exactly
repeated eigenvalues show up once until the Krylov space is exhausted).
"""

from collections.abc import Callable

import numpy as np
import scipy.linalg
import torch
from torch import Tensor


class Lanczos:
    """Grows a Lanczos basis one operator application at a time.

    Args:
        matvec: v (n,) -> H v (n,), H symmetric.
        start: start vector (n,), any norm but nonzero; fixes device and dtype.
        gen: generator for restart vectors after an invariant subspace.

    Attributes:
        steps: m, operator applications so far (at most n).
        beta_last: β_m, the norm of the part of H q_m outside the basis.
    """

    def __init__(self, matvec: Callable[[Tensor], Tensor], start: Tensor, gen: torch.Generator):
        self.matvec, self.gen = matvec, gen
        self.n = start.numel()
        self._basis = start.new_zeros(self.n, min(self.n, 32))  # (n, capacity)
        self._basis[:, 0] = start / torch.linalg.vector_norm(start)
        self.alpha: list[float] = []
        self.offdiag: list[float] = []  # T's off-diagonal; 0 where the recurrence restarted
        self.beta_last = float("nan")
        self._scale = 0.0  # running estimate of ‖H‖ for the breakdown test

    @property
    def steps(self) -> int:
        return len(self.alpha)

    @property
    def basis(self) -> Tensor:
        """Q_m (n, m), orthonormal columns."""
        return self._basis[:, : self.steps]

    def step(self) -> None:
        """One Lanczos step: applies H once and appends α_m (and q_{m+1} unless m = n)."""
        j = self.steps
        if j >= self.n:
            raise RuntimeError(f"the Krylov space of dimension n={self.n} is exhausted")
        q = self._basis[:, j]
        w = self.matvec(q)
        alpha = torch.dot(q, w).item()
        basis = self._basis[:, : j + 1]  # (n, j + 1)
        for _ in range(2):  # CGS2 against the whole basis; also removes α q_j and β q_{j-1}
            w = w - basis @ (basis.T @ w)
        beta = torch.linalg.vector_norm(w).item()
        self.alpha.append(alpha)
        self._scale = max(self._scale, abs(alpha) + beta)
        if j + 1 == self.n:  # complete basis: H = Q T Qᵀ up to rounding
            self.beta_last = 0.0
            return
        self.beta_last = beta
        eps = torch.finfo(w.dtype).eps
        if beta <= 10 * eps * max(self._scale, torch.finfo(w.dtype).tiny):
            w, beta = self._restart(basis), 0.0
        self._grow(j + 2)
        self._basis[:, j + 1] = w / torch.linalg.vector_norm(w)
        self.offdiag.append(beta)

    def _restart(self, basis: Tensor) -> Tensor:
        """A random vector orthogonal to the basis: the Krylov space is invariant."""
        w = torch.randn(self.n, generator=self.gen, dtype=basis.dtype, device=basis.device)
        for _ in range(2):
            w = w - basis @ (basis.T @ w)
        return w

    def _grow(self, columns: int) -> None:
        capacity = self._basis.shape[1]
        if columns > capacity:
            bigger = self._basis.new_zeros(self.n, min(self.n, max(columns, 2 * capacity)))
            bigger[:, :capacity] = self._basis
            self._basis = bigger

    def tridiagonal(self) -> tuple[np.ndarray, np.ndarray]:
        """Diagonal α (m,) and off-diagonal (m - 1,) of T_m, float64."""
        m = self.steps
        return np.asarray(self.alpha, dtype=np.float64), np.asarray(self.offdiag[: m - 1])

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigenpairs of T_m: Ritz values θ (m,) ascending and eigenvectors S (m, m) of T_m."""
        diag, off = self.tridiagonal()
        return scipy.linalg.eigh_tridiagonal(diag, off)
