"""The `case` fixture of the curvature tests: each model of `hessian_oracle.CASES` with its dense
Hessian, built once per module."""

from types import SimpleNamespace

import pytest
import torch
from hessian_oracle import CASES, build, dense_hessian


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    model, data, mode = build(request.param)
    rng = torch.get_rng_state()
    hess = dense_hessian(model, data, mode, rng)
    return SimpleNamespace(
        name=request.param, model=model, data=data, mode=mode, rng=rng, hess=hess
    )
