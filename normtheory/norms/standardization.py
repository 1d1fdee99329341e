"""Weight Standardization: convolution and linear layers whose weights are standardized.

Weight Standardization is a property of the weight layer, not a norm layer; a norm spec
such as ``"group+ws"`` asks a model builder for these layers plus Group Norm.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from normtheory.norms.batch import _check_eps


def standardize_weight(weight: Tensor, eps: float = 1e-5) -> Tensor:
    """Weight Standardization (Qiao et al. 2019, "Micro-Batch Training with Batch-Channel
    Normalization and Weight Standardization", Eq. 5, paper form).

    Per output channel i (dim 0), over its fan-in (all other dims):

        W_hat_i = (W_i - mu_i) / sqrt(sigma_i^2 + eps),   sigma_i^2 biased,

    so each row of W_hat has mean 0 and variance sigma_i^2 / (sigma_i^2 + eps). Differentiable:
    gradients flow back to the raw `weight`.

    Args:
        weight: (C_out, C_in, *kernel) or (out_features, in_features).
        eps: added to the variance inside the square root.

    Returns:
        The standardized weight, same shape as `weight`.
    """
    if weight.ndim < 2:
        raise ValueError(f"weight must have ndim >= 2 (out, fan-in...), got {tuple(weight.shape)}")
    eps = _check_eps(eps)
    flat = weight.reshape(weight.shape[0], -1)  # (C_out, fan_in)
    var, mean = torch.var_mean(flat, dim=1, correction=0, keepdim=True)  # (C_out, 1)
    return ((flat - mean) / torch.sqrt(var + eps)).reshape(weight.shape)


class WSConv1d(nn.Conv1d):
    """`nn.Conv1d` convolving with `standardize_weight(self.weight, ws_eps)`.

    Same constructor as `nn.Conv1d` plus the keyword `ws_eps`; `.weight` stays the raw,
    learnable parameter.
    """

    def __init__(self, *args, ws_eps: float = 1e-5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ws_eps = _check_eps(ws_eps)

    def standardized_weight(self) -> Tensor:
        """The weight the layer applies: `standardize_weight(self.weight, ws_eps)`."""
        return standardize_weight(self.weight, self.ws_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)


class WSConv2d(nn.Conv2d):
    """`nn.Conv2d` convolving with `standardize_weight(self.weight, ws_eps)`.

    Same constructor as `nn.Conv2d` plus the keyword `ws_eps`; `.weight` stays the raw,
    learnable parameter.
    """

    def __init__(self, *args, ws_eps: float = 1e-5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ws_eps = _check_eps(ws_eps)

    def standardized_weight(self) -> Tensor:
        """The weight the layer applies: `standardize_weight(self.weight, ws_eps)`."""
        return standardize_weight(self.weight, self.ws_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)


class WSLinear(nn.Linear):
    """`nn.Linear` applying `standardize_weight(self.weight, ws_eps)` (per output unit).

    Same constructor as `nn.Linear` plus the keyword `ws_eps`; `.weight` stays the raw,
    learnable parameter.
    """

    def __init__(self, *args, ws_eps: float = 1e-5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ws_eps = _check_eps(ws_eps)

    def standardized_weight(self) -> Tensor:
        """The weight the layer applies: `standardize_weight(self.weight, ws_eps)`."""
        return standardize_weight(self.weight, self.ws_eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.standardized_weight(), self.bias)
