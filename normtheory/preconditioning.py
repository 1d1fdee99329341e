"""Batch Normalization Preconditioning (BNP; Lange, Helfrich & Ye 2022): BN's input
normalization applied to the parameter gradients instead of the activations.

A weight layer z = W h + b whose input h has per-feature mean μ and variance σ² computes the
same function as z = Ŵ ĥ + b̂ on the normalized input ĥ = D⁻¹(h − μ), D = diag(√(σ² + ε)),
with Ŵ = W D and b̂ = b + W μ. Written on the augmented rows [W, b] and inputs [h; 1]:
[W, b] = [Ŵ, b̂] Uᵀ with U = [[D⁻¹, 0], [−μᵀD⁻¹, 1]]. A gradient step in the normalized
coordinates, mapped back, is the preconditioned step on the original ones:

    [ΔW, Δb] = −η [∇_W L, ∇_b L] U Uᵀ,   U Uᵀ = [[D⁻², −D⁻²μ], [−μᵀD⁻², 1 + μᵀD⁻²μ]]

i.e. per output row, with g_W, g_b its gradient::

    g_W ← (g_W − g_b μ) / (σ² + ε),    g_b ← g_b (1 + Σ_j μ_j² / (σ_j² + ε)) − Σ_j g_W,j μ_j / (σ_j² + ε)

This is what the paper calls BNP: no normalization layer, the net computes the same function
as before, and the Hessian the optimizer sees is Uᵀ H U (`normtheory.measure.preconditioned`),
which is better conditioned when the inputs are off-centre or of unequal scales. For a conv,
input channel c's statistics (over the batch and the positions) apply to every kernel position
of that channel (the padding's zeros are not re-centred: the approximation BN before a conv
makes too). A layer without bias gets only the scaling g_W / (σ² + ε).

The statistics are running averages, so BNP works at any batch size, 1 included (online): per
layer, the mean m and the second moment s = E[h²] are exponential averages of the batch's
(``m ← (1 − α) m + α mean(h)``, the same for s; α = `momentum`), started at m = 0, s = 1 (σ² = 1:
the first steps are nearly unpreconditioned), and σ² = max(s − m², 0). Averaging the second
moment rather than the batch variance keeps σ² > 0 at batch 1, where a batch variance is 0.
What is simplified: the paper also discusses the normalization of the pre-activations' scale
(BN's division by the output's standard deviation); only the input centring and scaling is
implemented here.

Use in any loop::

    bnp = BNPreconditioner(model)
    for x, y in batches:
        opt.zero_grad()
        with bnp.observe():           # records each layer's input statistics of this batch
            loss = loss_fn(model(x), y)
        loss.backward()
        bnp.precondition()            # .grad <- .grad U Uᵀ, with the running statistics
        opt.step()
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def input_moments(h: Tensor) -> tuple[Tensor, Tensor]:
    """Per input feature (dim 1) mean and mean square of a layer input: over the batch for
    (N, F), over the batch and the positions for (N, C, *spatial)."""
    dims = (0, *range(2, h.ndim))
    return h.mean(dim=dims), h.square().mean(dim=dims)


def precondition_grads(
    weight_grad: Tensor, bias_grad: Tensor | None, mean: Tensor, var: Tensor, eps: float
) -> tuple[Tensor, Tensor | None]:
    """The BNP step direction [g_W, g_b] U Uᵀ of one layer (formula in the module docstring).

    Args:
        weight_grad: (out, in, *kernel) gradient of the weight.
        bias_grad: (out,) gradient of the bias, or None for a layer without one.
        mean, var: (in,) statistics of the layer's input features (channels).
        eps: added to `var`.
    """
    shape = (1, -1) + (1,) * (weight_grad.ndim - 2)  # broadcasts (in,) over (out, in, *kernel)
    inv = 1.0 / (var + eps)  # (in,)
    if bias_grad is None:
        return weight_grad * inv.reshape(shape), None
    mu = mean.reshape(shape).expand_as(weight_grad)  # μ of every fan-in entry
    inv = inv.reshape(shape).expand_as(weight_grad)
    gb = bias_grad.reshape((-1,) + (1,) * (weight_grad.ndim - 1))  # (out, 1, ...)
    new_w = (weight_grad - gb * mu) * inv
    rows = weight_grad.shape[0]
    quad = (mu.square() * inv).reshape(rows, -1).sum(dim=1)  # Σ_j μ_j² / (σ_j² + ε)
    cross = (weight_grad * mu * inv).reshape(rows, -1).sum(dim=1)  # Σ_j g_j μ_j / (σ_j² + ε)
    return new_w, bias_grad * (1 + quad) - cross


class BNPreconditioner:
    """Batch Normalization Preconditioning of the chosen weight layers' gradients.

    Args:
        model: the model.
        names: module names of the `nn.Linear` / `nn.Conv1d` / `nn.Conv2d` layers to
            precondition; default: every such layer (the head included: BN's normalization of
            the head's input is what a BN net adds before it, too).
        momentum: α of the running averages (default 0.1, BN's).
        eps: added to the running variance.

    Attributes:
        names: the preconditioned layers.
        mean, square: per layer, the running mean and mean square of its input features.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        names: Iterable[str] | None = None,
        momentum: float = 0.1,
        eps: float = 1e-5,
    ) -> None:
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1], got {momentum!r}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps!r}")
        modules = dict(model.named_modules())
        layers = {n: m for n, m in modules.items() if isinstance(m, _LAYERS)}
        if names is not None:
            names = list(names)
            bad = [n for n in names if n not in layers]
            if bad:
                raise ValueError(
                    f"not a Linear/Conv1d/Conv2d layer of the model: {bad}; "
                    f"layers: {', '.join(layers)}"
                )
            layers = {n: layers[n] for n in names}
        if not layers:
            raise ValueError("the model has no Linear/Conv1d/Conv2d layer to precondition")
        self.layers, self.names = layers, list(layers)
        self.momentum, self.eps = float(momentum), float(eps)
        self.mean: dict[str, Tensor] = {}
        self.square: dict[str, Tensor] = {}
        for n, m in layers.items():
            c = m.in_features if isinstance(m, nn.Linear) else m.in_channels
            kw = dict(dtype=m.weight.dtype, device=m.weight.device)
            self.mean[n], self.square[n] = torch.zeros(c, **kw), torch.ones(c, **kw)

    def variance(self, name: str) -> Tensor:
        """σ² = max(s − m², 0) of layer `name`'s input features."""
        return (self.square[name] - self.mean[name].square()).clamp_min(0.0)

    @contextmanager
    def observe(self) -> Iterator["BNPreconditioner"]:
        """Within the block, each forward call of a chosen layer folds its input's moments
        into the running averages (detached); use it around the training forward only, so
        measurements' forward passes leave the statistics alone."""

        def hook(name):
            def fold(module, args):
                mean, square = input_moments(args[0].detach())
                a = self.momentum
                for store, value in ((self.mean, mean), (self.square, square)):
                    store[name] = (1 - a) * store[name].to(value) + a * value

            return fold

        handles = [m.register_forward_pre_hook(hook(n)) for n, m in self.layers.items()]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    @torch.no_grad()
    def precondition(self) -> None:
        """Replaces each chosen layer's ``.grad`` by its BNP direction (a layer without a
        gradient is skipped)."""
        for name, m in self.layers.items():
            if m.weight.grad is None:
                continue
            bias = m.bias.grad if m.bias is not None and m.bias.grad is not None else None
            w, b = precondition_grads(
                m.weight.grad, bias, self.mean[name], self.variance(name), self.eps
            )
            m.weight.grad.copy_(w)
            if b is not None:
                m.bias.grad.copy_(b)

    def state_dict(self) -> dict:
        return {"mean": {k: v.clone() for k, v in self.mean.items()},
                "square": {k: v.clone() for k, v in self.square.items()}}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.mean = {k: v.clone() for k, v in state["mean"].items()}
        self.square = {k: v.clone() for k, v in state["square"].items()}

    def __repr__(self) -> str:
        return f"BNPreconditioner(names={self.names}, momentum={self.momentum}, eps={self.eps})"
