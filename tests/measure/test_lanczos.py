"""The Lanczos recurrence: full reorthogonalization, and restarts on an invariant subspace."""

import numpy as np
import pytest
import torch

from normtheory.measure.lanczos import Lanczos

pytestmark = pytest.mark.usefixtures("one_thread")


def test_lanczos_restarts_on_invariant_subspace():
    """An operator with repeated eigenvalues: one start vector only spans 3 directions, so
    the recurrence must restart to reach all n eigenvalues (with their multiplicities)."""
    diag = torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0, 5.0], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    lz = Lanczos(lambda v: diag * v, torch.ones(6, dtype=torch.float64), gen)
    for _ in range(6):
        lz.step()
    theta, _ = lz.ritz()
    np.testing.assert_allclose(theta, diag.numpy(), atol=1e-12)
    basis = lz.basis
    torch.testing.assert_close(basis.T @ basis, torch.eye(6, dtype=torch.float64))
