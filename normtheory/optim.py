"""Optimizer pieces for scale-invariant weights: weight rescaling (WRS) and decay groups.

Weight rescaling (Liu et al. 2021, "Weight rescaling"; CLAIMS.md: WRS): after every optimizer
step, each output channel (row) w_o of a per-channel scale-invariant weight is set to
w_o / ‖w_o‖, and that weight gets no weight decay. The loss does not change (the weight is
scale-invariant), but the effective learning rate η/‖w_o‖² stays at η instead of decaying as
‖w_o‖ grows (SI-GROWTH), and the component of w_o outside the span of the layer's inputs,
which SGD never touches (SPAN-ORTH), shrinks by 1/‖w_o − η g_o‖ = 1/√(1 + η²‖g_o‖²) per
step, as weight decay would shrink it.

Use in any loop::

    rescaler = WeightRescaling(model)
    opt = torch.optim.SGD(rescaler.param_groups(weight_decay=5e-4), lr=0.1, momentum=0.9)
    for x, y in batches:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        rescaler.after_step()
"""

from collections.abc import Iterable

import torch
from torch import nn

from normtheory.measure.scale_invariant import PER_CHANNEL, find_scale_invariant
from normtheory.norms import norm_layers


def _resolve(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Parameter]:
    """Parameter name -> parameter for module names (their ``.weight``) or parameter names."""
    modules, params = dict(model.named_modules()), dict(model.named_parameters())
    out = {}
    for name in names:
        if name in params:
            out[name] = params[name]
        elif name in modules and isinstance(getattr(modules[name], "weight", None), nn.Parameter):
            out[f"{name}.weight" if name else "weight"] = modules[name].weight
        else:
            known = [
                n
                for n, m in modules.items()
                if isinstance(getattr(m, "weight", None), nn.Parameter)
            ]
            raise ValueError(
                f"{name!r} is neither a parameter nor a module with a weight of the model; "
                f"modules with a weight: {', '.join(known)}"
            )
    return out


def build_param_groups(
    model: nn.Module, weight_decay: float, *, exclude: Iterable[str] = ()
) -> list[dict]:
    """Optimizer parameter groups: every trainable parameter decays by `weight_decay`, except
    those named in `exclude`, which get ``weight_decay=0``.

    Args:
        model: the model.
        weight_decay: the decay of the other parameters.
        exclude: module names (their ``.weight`` is excluded, e.g. ``"fc1"``) or parameter
            names (e.g. ``"fc1.weight"``).

    Returns:
        ``[{"params": decayed, "weight_decay": weight_decay}, {"params": excluded,
        "weight_decay": 0.0}]`` in parameter order, empty groups left out; pass it to any
        ``torch.optim`` optimizer (group options override the optimizer's defaults).

    Raises:
        ValueError: a name in `exclude` is not in the model.
    """
    excluded = {id(p) for p in _resolve(model, exclude).values()}
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if id(p) in excluded else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


class WeightRescaling:
    """Rescales each output channel of the chosen weights to unit norm after every step.

    Args:
        model: the model.
        names: module names (or parameter names) of the weights to rescale; default: the
            ``"per_channel"`` scale-invariant weights of `find_scale_invariant(model)` (for a
            model without ``model.config`` call that with an example input yourself). Only
            give weights the loss is invariant to per row, or training changes.

    Attributes:
        names: the parameter names that are rescaled.
    """

    def __init__(self, model: nn.Module, *, names: Iterable[str] | None = None) -> None:
        if names is None:
            found = find_scale_invariant(model)
            names = [n for n, kind in found.items() if kind == PER_CHANNEL]
        self.model = model
        self._params = _resolve(model, names)
        self.names = list(self._params)

    @torch.no_grad()
    def after_step(self) -> None:
        """w_o <- w_o / ‖w_o‖ for every row of every chosen weight, in place (dtype, device
        and parameter identity kept; a zero row stays zero). The optimizer's state (momentum
        buffers) is not rescaled: with a rescale every step ‖w_o‖ stays near 1."""
        for p in self._params.values():
            rows = p.reshape(p.shape[0], -1)  # (out, fan_in)
            norms = rows.norm(dim=1)
            norms = torch.where(norms > 0, norms, torch.ones_like(norms))
            p.div_(norms.reshape(-1, *([1] * (p.ndim - 1))))

    def param_groups(self, weight_decay: float) -> list[dict]:
        """`build_param_groups` with the rescaled weights excluded from weight decay."""
        return build_param_groups(self.model, weight_decay, exclude=self.names)

    def __repr__(self) -> str:
        return f"WeightRescaling(names={self.names})"


# -- decay of the normalization layers' affine parameters -----------------------------------------


def norm_affine_params(model: nn.Module) -> dict[str, dict[str, nn.Parameter]]:
    """The affine parameters of every normalization layer: ``{"gamma": {name: param},
    "beta": {name: param}, "other": {name: param}}`` — γ is a norm's ``weight``, β its
    ``bias``, "other" any further parameter (FRN's TLU threshold τ, Batch Kalman Norm's
    transition and gain)."""
    out: dict[str, dict[str, nn.Parameter]] = {"gamma": {}, "beta": {}, "other": {}}
    for module_name, module in norm_layers(model).items():
        for pname, p in module.named_parameters(recurse=False):
            kind = {"weight": "gamma", "bias": "beta"}.get(pname, "other")
            out[kind][f"{module_name}.{pname}" if module_name else pname] = p
    return out


class NormDecay:
    """Coupled L2 decay of the norms' γ toward 1 and β toward 0, switchable separately.

    ``apply()`` adds λ_γ (γ − 1) to γ's gradient and λ_β β to β's gradient (the gradients of
    λ_γ/2 ‖γ − 1‖² and λ_β/2 ‖β‖²); call it after ``backward()`` and before
    ``optimizer.step()``. Give γ and β no optimizer weight decay (`build_param_groups` with
    ``exclude=norm_decay.names``), so the weights' decay never pulls γ toward 0 (Summers &
    Dinneen 2019; CLAIMS.md: GAMMA-WD).

    Args:
        model: the model.
        gamma: λ_γ, decay of γ toward 1 (0: none).
        beta: λ_β, decay of β toward 0 (0: none).
    """

    def __init__(self, model: nn.Module, *, gamma: float = 0.0, beta: float = 0.0) -> None:
        for name, value in (("gamma", gamma), ("beta", beta)):
            if not (isinstance(value, int | float) and value >= 0):
                raise ValueError(f"{name} decay must be a float >= 0, got {value!r}")
        params = norm_affine_params(model)
        self.gamma, self.beta = float(gamma), float(beta)
        self._gammas, self._betas = params["gamma"], params["beta"]
        self.names = [*self._gammas, *self._betas, *params["other"]]

    @torch.no_grad()
    def apply(self) -> None:
        """Adds the decay gradients in place (a parameter without a gradient gets one)."""
        for params, decay, target in (
            (self._gammas, self.gamma, 1.0),
            (self._betas, self.beta, 0.0),
        ):
            if decay == 0:
                continue
            for p in params.values():
                step = decay * (p - target)
                if p.grad is None:
                    p.grad = step.clone()
                else:
                    p.grad.add_(step)

    def __repr__(self) -> str:
        return f"NormDecay(gamma={self.gamma}, beta={self.beta}, params={len(self.names)})"


# -- adaptive gradient clipping -------------------------------------------------------------------


def unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    """‖x_i‖ per output unit i (row of dim 0, over all other dims) for ndim ≥ 2, broadcastable
    to `x`; the whole tensor's norm for a scalar or a vector (a bias, a gain), as in the NFNets
    authors' code."""
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), keepdim=True)  # (out, 1, …)


class AdaptiveGradClipping:
    """Adaptive Gradient Clipping (AGC; Brock, De, Smith & Simonyan 2021, "High-Performance
    Large-Scale Image Recognition Without Normalization", Sec. 4, Eq. 3).

    For every unit i of every clipped parameter (a row of a weight: one output channel over its
    fan-in; a bias or gain as a whole), with G_i its gradient and W_i its value:

        G_i ← λ ‖W_i‖* / ‖G_i‖ · G_i   if ‖G_i‖ / ‖W_i‖* > λ,   else G_i unchanged,

    where ‖W_i‖* = max(‖W_i‖, ε) (ε = 10⁻³ keeps zero-initialized parameters from being frozen)
    and λ is the clipping threshold. So one SGD step changes no unit by more than a fraction
    η λ of its norm. The classifier is not clipped by default (the paper: "it is beneficial
    not to clip the final linear layer").

    Use in any loop: ``loss.backward(); agc.apply(); optimizer.step()``. In `TrainConfig` it
    is ``agc=λ`` (0: off), applied after the hooks saw the loss gradient and before the
    optimizer step.

    Args:
        model: the model.
        clipping: λ > 0.
        eps: ε ≥ 0.
        exclude: module names whose parameters are not clipped (default: the head).
    """

    def __init__(
        self,
        model: nn.Module,
        clipping: float = 0.01,
        *,
        eps: float = 1e-3,
        exclude: Iterable[str] = ("head",),
    ) -> None:
        if not (isinstance(clipping, int | float) and clipping > 0):
            raise ValueError(f"clipping must be a float > 0, got {clipping!r}")
        if not (isinstance(eps, int | float) and eps >= 0):
            raise ValueError(f"eps must be a float >= 0, got {eps!r}")
        modules = dict(model.named_modules())
        unknown = [n for n in exclude if n not in modules]
        if unknown:
            raise ValueError(f"exclude names no module of the model: {unknown}")
        prefixes = tuple(f"{n}." for n in exclude)
        self.clipping, self.eps = float(clipping), float(eps)
        self._params = {
            n: p
            for n, p in model.named_parameters()
            if p.requires_grad and not n.startswith(prefixes)
        }
        self.names = list(self._params)

    @torch.no_grad()
    def apply(self) -> None:
        """Clips every chosen parameter's ``.grad`` in place (parameters without one are skipped)."""
        for p in self._params.values():
            if p.grad is None:
                continue
            max_norm = unitwise_norm(p).clamp(min=self.eps) * self.clipping
            grad_norm = unitwise_norm(p.grad)
            factor = torch.where(
                grad_norm > max_norm,
                max_norm / grad_norm.clamp(min=1e-30),
                torch.ones_like(grad_norm),
            )
            p.grad.mul_(factor)

    def __repr__(self) -> str:
        return f"AdaptiveGradClipping(clipping={self.clipping}, eps={self.eps}, params={len(self.names)})"
