"""`normtheory.norms.frn`: Filter Response Normalization (Singh & Krishnan 2020),
z = max(γ·x/√(ν² + ε) + β, τ) with ν² the mean of x² over the spatial positions: its parameters
start as the identity affine map and a zero threshold, it normalizes a vector response by itself,
and it depends on neither the batch nor the train/eval mode. (Its float64 loop oracle over every
input shape: ``test_norms.py``.)"""

import torch

from normtheory.norms import FilterResponseNorm


def test_frn_parameters_start_as_identity_affine_and_zero_threshold():
    frn = FilterResponseNorm(5)
    assert dict(frn.named_parameters()).keys() == {"weight", "bias", "tau"}
    assert torch.equal(frn.weight, torch.ones(5)) and torch.equal(frn.bias, torch.zeros(5))
    assert torch.equal(frn.tau, torch.zeros(5))


def test_frn_on_vectors_normalizes_each_response_by_itself():
    """For (N, C) input nu^2 = x^2, so with default parameters z = max(x / sqrt(x^2 + eps), 0)."""
    x = torch.tensor([[3.0, -2.0, 0.5]], dtype=torch.float64)
    expected = torch.clamp(x / torch.sqrt(x * x + 1e-6), min=0)
    torch.testing.assert_close(FilterResponseNorm(3).double()(x), expected, rtol=1e-12, atol=0)


def test_frn_is_batch_independent_and_mode_free():
    frn = FilterResponseNorm(3).double()
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(frn(x)[1:2], frn.eval()(x[1:2]), rtol=1e-12, atol=1e-12)
