"""Filter Response Normalization with its Thresholded Linear Unit (FRN + TLU)."""

import torch
from torch import Tensor, nn

from normtheory.checks import check_int
from normtheory.norms.batch import _channel_shape, _check_eps, _check_input


class FilterResponseNorm(nn.Module):
    """Filter Response Normalization + TLU (Singh & Krishnan 2019, "Filter Response
    Normalization Layer", Eq. 1-3).

    Per example n and channel c, with nu^2 the mean of x^2 over the spatial positions (for
    (N, C) input nu^2 = x^2):

        x_hat = x / sqrt(nu^2 + eps),   z = max(gamma_c x_hat + beta_c, tau_c)

    No mean is subtracted and nothing depends on the batch; the learned threshold tau makes
    the layer its own activation, so models put no ReLU after it (`includes_activation`).

    Args:
        num_features: channel count C.
        eps: added to nu^2 inside the square root.
    """

    includes_activation = True

    def __init__(self, num_features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_features = check_int("num_features", num_features)
        self.eps = _check_eps(eps)
        self.weight = nn.Parameter(torch.ones(num_features))  # gamma
        self.bias = nn.Parameter(torch.zeros(num_features))  # beta
        self.tau = nn.Parameter(torch.zeros(num_features))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.num_features, type(self).__name__)
        if x.ndim > 2:
            nu2 = x.square().mean(dim=tuple(range(2, x.ndim)), keepdim=True)  # (N, C, 1, ...)
        else:
            nu2 = x.square()  # (N, C): a single response per channel
        x_hat = x * torch.rsqrt(nu2 + self.eps)
        shape = _channel_shape(x)
        z = self.weight.reshape(shape) * x_hat + self.bias.reshape(shape)
        return torch.maximum(z, self.tau.reshape(shape))
