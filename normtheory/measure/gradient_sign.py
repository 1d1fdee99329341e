"""IC-SIGN: how one-signed the rows of per-sample weight gradients are (CLAIMS.md).

For y = W x and one example's loss ℓ_i the gradient is ∇_W ℓ_i = δ xᵀ, whose row o, δ_o x, is the
input vector times one scalar: with non-negative inputs (ReLU output) every row has one sign
(Chen et al. 2019, the IC layer). That argument holds for a linear layer in eval mode. A conv's
row sums δ_{o,p} x_p over the output positions p, and in train mode the BN after a layer makes
ℓ_i depend on every example of the batch through its statistics, so the row becomes
Σ_n Σ_p (∂ℓ_i/∂z_{n,o,p}) x_{n,p}: sign mixtures, not an identity. This module measures the rows
as the nets train.

`per_sample_gradients` gives the exact Jacobian of the per-example losses (ℓ_1 … ℓ_N, each
computed in one forward pass of the whole batch, batch statistics included) with respect to
chosen weights; `row_sign_fractions` turns it into the same-sign fractions of its rows.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jacrev

from normtheory.batches import OutputsLoss, as_model_loss
from normtheory.measure._functional import BoundLoss
from normtheory.state import preserved

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass(frozen=True)
class SignFractions:
    """Sign structure of one layer's per-sample gradient rows.

    Attributes:
        same_sign: mean over rows (examples × output units) of the majority-sign share
            max(#g > 0, #g < 0) / #g ≠ 0 (1.0: every row one-signed; ≈ 0.5: random signs).
        one_signed: fraction of rows whose non-zero entries all share one sign.
        rows: rows counted (rows with no non-zero entry are left out).
    """

    same_sign: float
    one_signed: float
    rows: int


def row_sign_fractions(grads: Tensor) -> SignFractions:
    """Same-sign fractions of the rows of per-sample weight gradients.

    Row (i, o) is g_{i,o} = ∇_{W_o} ℓ_i flattened (for a conv: in_channels × kernel entries).
    same_sign = mean_{i,o} max(P, M) / (P + M) and one_signed = mean_{i,o} [min(P, M) = 0], with
    P = #{k: g_{i,o,k} > 0}, M = #{k: g_{i,o,k} < 0}, over rows with P + M > 0 (NaN if none).

    Args:
        grads: (N, O, ...) per-sample gradients of a weight of O output rows.
    """
    g = grads.detach().flatten(2)  # (N, O, K)
    pos, neg = (g > 0).sum(-1), (g < 0).sum(-1)  # (N, O)
    nonzero = pos + neg
    keep = nonzero > 0
    if not keep.any():
        return SignFractions(float("nan"), float("nan"), 0)
    share = torch.maximum(pos, neg)[keep].double() / nonzero[keep]
    one = torch.minimum(pos, neg)[keep] == 0
    return SignFractions(float(share.mean()), float(one.double().mean()), int(keep.sum()))


def per_sample_gradients(
    model: nn.Module,
    inputs: object,
    targets: Tensor | None,
    *,
    layers: Iterable[str] | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    train: bool = True,
    chunk_size: int | None = 64,
) -> dict[str, Tensor]:
    """Exact per-sample gradients J_i = ∇_W ℓ_i of each chosen layer's weight.

    ℓ = loss_fn(model(x), y) is the vector of the N per-example losses of ONE forward pass of
    the whole batch (in train mode BN normalizes with the batch statistics and dropout draws one
    set of masks, as in a training step), and J = ∂ℓ/∂W is its Jacobian by reverse mode
    (`torch.func.jacrev`, one vector-Jacobian product per example, in chunks of `chunk_size`).
    `torch.func.vmap` over examples would cut the batch statistics, so it is not used.

    Pure: the forward pass uses `functional_call` with copies of the buffers (BN running
    statistics are not updated) inside `normtheory.state.preserved` (mode, ``.grad`` and the RNG
    streams restored, so dropout's mask stream is untouched).

    Args:
        model: the network.
        inputs, targets: one batch (N examples); with a loss ``loss_fn(model, batch)``,
            `inputs` may be the whole batch of any structure and `targets` None
            (`normtheory.batches`).
        layers: module names of `nn.Linear`/`nn.Conv1d`/`nn.Conv2d` layers; default all of them.
        loss_fn: ``(outputs, targets) -> (N,)`` or ``(model, batch) -> (N,)`` per-example
            losses, batch = `inputs` (or ``(inputs, targets)`` when targets are given); default
            cross-entropy.
        train: train mode (batch statistics, dropout) or eval mode.
        chunk_size: examples per vectorized backward pass (None: all at once).

    Returns:
        ``{layer name: (N, *weight.shape)}`` in float of the weight's dtype.
    """
    loss = as_model_loss(loss_fn or (lambda out, y: F.cross_entropy(out, y, reduction="none")))
    general = not isinstance(loss, OutputsLoss)
    batch = inputs if general and targets is None else (inputs, targets)
    bound = BoundLoss(model, loss)
    names = weight_layers(model, layers)
    with preserved(model):
        model.train(train)
        weights = {f"{n}.weight": model.get_submodule(n).weight.detach() for n in names}
        fixed = {k: v.detach() for k, v in model.named_parameters() if k not in weights}
        buffers = dict(model.named_buffers())

        def losses(w: dict[str, Tensor]) -> Tensor:
            state = {**fixed, **w, **{k: b.clone() for k, b in buffers.items()}}
            state = {f"model.{k}": v for k, v in state.items()}
            return functional_call(bound, state, (batch,))  # (N,)

        jac = jacrev(losses, chunk_size=chunk_size)(weights)
    return {n: jac[f"{n}.weight"].detach() for n in names}


def gradient_sign(
    model: nn.Module, inputs: object, targets: Tensor | None, **kw
) -> dict[str, SignFractions]:
    """IC-SIGN: `row_sign_fractions` of each layer's `per_sample_gradients` (same arguments)."""
    grads = per_sample_gradients(model, inputs, targets, **kw)
    return {name: row_sign_fractions(g) for name, g in grads.items()}


def weight_layers(model: nn.Module, layers: Iterable[str] | None = None) -> list[str]:
    """Names of the linear/conv layers of `model` (all, or the chosen ones, checked)."""
    modules = dict(model.named_modules())
    if layers is None:
        return [n for n, m in modules.items() if isinstance(m, WEIGHT_LAYERS)]
    names = list(layers)
    bad = [n for n in names if not n or not isinstance(modules.get(n), WEIGHT_LAYERS)]
    if bad or not names:
        valid = ", ".join(n for n, m in modules.items() if isinstance(m, WEIGHT_LAYERS))
        raise ValueError(f"unknown or non-weight layers {bad or names}; weight layers: {valid}")
    return names
