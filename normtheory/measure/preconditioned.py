"""The Hessian of the loss restricted to one weight layer, plain and as Batch Normalization
Preconditioning (BNP) sees it (BNP-HESS).

For a layer with augmented rows v_o = [w_o, b_o] (o = 1 … out; for a conv w_o is the flattened
(in, *kernel) filter), H is the dense Hessian of the mean loss w.r.t. vec([W, b]), rows stacked
(each row: its fan-in entries, then its bias). BNP's reparametrization [W, b] = [Ŵ, b̂] Uᵀ
(`normtheory.preconditioning`) gives the loss in the normalized coordinates the Hessian

    Ĥ = (I_out ⊗ U)ᵀ H (I_out ⊗ U),   U = [[D⁻¹, 0], [−μᵀD⁻¹, 1]],  D = diag(√(σ² + ε))

(μ, σ² of the layer's input features, repeated over a conv's kernel positions), whose
eigenvalues are those of P^½ H P^½ with P = I ⊗ U Uᵀ, the preconditioner BNP applies: Ĥ is the
curvature a BNP step meets. `spectrum_summary` reads off the top eigenvalue, the smallest
non-null one and their ratio (the condition number on the non-null space: a softmax head's
Hessian has an exact null space, the shift of all class rows by one vector).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from normtheory.state import preserved, probe_forward

LossFn = Callable[[Tensor, Tensor], Tensor]


def layer_hessian(
    model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, layer: str, *, mode: str = "eval"
) -> Tensor:
    """Dense float64 Hessian of ``loss_fn(model(x), y)`` w.r.t. the weight and bias of the
    Linear/Conv module `layer`, in the row-stacked augmented order (see the module docstring);
    size out·(fan_in + 1) (out·fan_in without a bias). Cost: one forward and that many double
    backward passes (``torch.autograd.functional.hessian``); meant for small layers (a
    classifier head). The model runs in `mode` on float64 copies of the parameters and buffers
    (train-mode BN updates only the copies); nothing of it changes."""
    if mode not in ("eval", "train"):
        raise ValueError(f"unknown mode {mode!r}; valid: eval, train")
    module = dict(model.named_modules()).get(layer)
    if not isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
        raise ValueError(f"{layer!r} is not a Linear/Conv1d/Conv2d module of the model")
    w = module.weight.detach().double()
    out, has_bias = w.shape[0], module.bias is not None
    rows = w.reshape(out, -1)
    if has_bias:
        rows = torch.cat([rows, module.bias.detach().double().reshape(out, 1)], dim=1)
    fan_in = w[0].numel()
    params = {n: p.detach().double() for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone().double() if b.is_floating_point() else b.clone()
               for n, b in model.named_buffers()}  # fmt: skip
    prefix = f"{layer}." if layer else ""

    def loss(theta: Tensor) -> Tensor:
        r = theta.reshape(out, -1)
        chosen = {f"{prefix}weight": r[:, :fan_in].reshape(w.shape)}
        if has_bias:
            chosen[f"{prefix}bias"] = r[:, fan_in]
        state = {**params, **buffers, **chosen}
        logits = torch.func.functional_call(model, state, (x.double(),))
        return loss_fn(logits, y)

    with preserved(model):
        model.train(mode == "train")
        return torch.autograd.functional.hessian(loss, rows.reshape(-1)).detach()


def layer_input_stats(
    model: nn.Module, x: Tensor, layer: str, *, mode: str = "eval"
) -> tuple[Tensor, Tensor]:
    """(mean, biased variance) per input feature (channel) of `layer` on the batch `x`: over the
    examples, and the positions for a conv; float64; the model is left as it was."""
    h = probe_forward(model, x, {layer: dict(model.named_modules())[layer]}, side="input",
                      train=mode == "train")[layer].double()  # fmt: skip
    dims = (0, *range(2, h.ndim))
    var, mean = torch.var_mean(h, dim=dims, correction=0)
    return mean, var


def bnp_transform(
    hessian: Tensor, mean: Tensor, var: Tensor, *, out: int, kernel: int = 1,
    has_bias: bool = True, eps: float = 1e-5,
) -> Tensor:  # fmt: skip
    """Ĥ = (I_out ⊗ U)ᵀ H (I_out ⊗ U) for a layer with `out` rows of `kernel` positions per
    input feature (1 for a Linear), in `layer_hessian`'s order. Without a bias U = D⁻¹."""
    d_inv = 1.0 / torch.sqrt(var.double() + eps)  # (in,)
    d_inv = d_inv.repeat_interleave(kernel)  # fan-in entries are (in, *kernel), row-major
    mu = mean.double().repeat_interleave(kernel)
    n = d_inv.numel()
    u = torch.diag(d_inv)
    if has_bias:
        u = torch.zeros(n + 1, n + 1, dtype=torch.float64, device=hessian.device)
        u[:n, :n] = torch.diag(d_inv)
        u[n, :n] = -mu * d_inv
        u[n, n] = 1.0
    big = torch.block_diag(*[u] * out)
    return big.T @ hessian @ big


@dataclass(frozen=True)
class Spectrum:
    """Eigenvalue summary of a (near-)PSD Hessian: `top` eigenvalue, smallest non-null
    eigenvalue `bottom` (> `null_tol` · top), `cond` = top / bottom, `null` = how many
    eigenvalues are within ± null_tol · top, `negative` = how many are below −null_tol · top."""

    top: float
    bottom: float
    cond: float
    null: int
    negative: int


def spectrum_summary(hessian: Tensor, null_tol: float = 1e-10) -> Spectrum:
    """The `Spectrum` of the symmetric matrix `hessian` (symmetrized, float64 ``eigvalsh``)."""
    h = hessian.double()
    eig = torch.linalg.eigvalsh((h + h.T) / 2)
    top = float(eig[-1])
    tol = null_tol * abs(top)
    positive = eig[eig > tol]
    bottom = float(positive[0]) if len(positive) else float("nan")
    return Spectrum(
        top=top,
        bottom=bottom,
        cond=top / bottom if len(positive) else float("nan"),
        null=int((eig.abs() <= tol).sum()),
        negative=int((eig < -tol).sum()),
    )
