"""Hook: the spectrum of one layer's Hessian, plain and under BN Preconditioning (BNP-HESS)."""

from collections.abc import Iterable

import torch.nn.functional as F

from normtheory.checks import check_choice
from normtheory.hooks.base import Context, Every, Hook, Record
from normtheory.hooks.schedule import at_end
from normtheory.measure.preconditioned import (
    bnp_transform,
    layer_hessian,
    layer_input_stats,
    spectrum_summary,
)


class LayerHessianBNP(Hook):
    """Top and smallest non-null eigenvalue and condition number of the Hessian restricted to
    one layer, H, and of the same Hessian in BNP's normalized coordinates, Ĥ = Uᵀ H U
    (`normtheory.measure.preconditioned`), on a fixed probe batch.

    U is built from the mean and variance of the layer's input features on the probe itself
    (what BNP's running averages estimate), so the same measurement applies to any net: a BNP
    net, the same net without preconditioning, a BN net. Keys ``plain`` (H) and ``bnp`` (Ĥ);
    metrics ``top``, ``bottom``, ``cond``, ``null`` (eigenvalues within ± `null_tol` · top) and
    ``negative``. Runs at ``start`` and on its schedule (default: the end of the run; nothing at
    the end of a run that diverged: `Hook.trained_only`).

    Args:
        probe: (inputs, targets).
        layer: module name of a Linear/Conv layer (default ``head``: the classifier, where the
            Hessian is PSD, so the condition number is defined).
        mode: ``eval`` or ``train``.
        eps: BNP's ε.
        null_tol: relative tolerance of the null space.
        name: the metric prefix (default ``bnp_hess``).
        every: the schedule (default `at_end()`).
    """

    events = ("start", "after_step")
    trained_only = True
    default_name = "bnp_hess"
    PREFIX = "bnp_hess."
    TOP = "bnp_hess.top"
    BOTTOM = "bnp_hess.bottom"
    COND = "bnp_hess.cond"
    NULL = "bnp_hess.null"
    NEGATIVE = "bnp_hess.negative"
    METRICS = (TOP, BOTTOM, COND, NULL, NEGATIVE)

    def __init__(
        self,
        *,
        probe,
        layer: str = "head",
        mode: str = "eval",
        eps: float = 1e-5,
        null_tol: float = 1e-10,
        name: str | None = None,
        every: Every | None = None,
    ):
        super().__init__(name=name, every=at_end() if every is None else every)
        check_choice("mode", mode, ("eval", "train"))
        self.x, self.y = probe
        self.layer, self.mode, self.eps, self.null_tol = layer, mode, eps, null_tol

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        model = ctx.model
        device = next(model.parameters()).device
        x, y = self.x.to(device), self.y.to(device)
        loss_fn = ctx.loss_fn or F.cross_entropy
        h = layer_hessian(model, loss_fn, x, y, self.layer, mode=self.mode)
        mean, var = layer_input_stats(model, x, self.layer, mode=self.mode)
        module = model.get_submodule(self.layer)
        kernel = module.weight[0, 0].numel()
        h_bnp = bnp_transform(h, mean, var, out=module.weight.shape[0], kernel=kernel,
                              has_bias=module.bias is not None, eps=self.eps)  # fmt: skip
        out = []
        for key, matrix in (("plain", h), ("bnp", h_bnp)):
            s = spectrum_summary(matrix, self.null_tol)
            out += [("top", key, s.top), ("bottom", key, s.bottom), ("cond", key, s.cond),
                    ("null", key, s.null), ("negative", key, s.negative)]  # fmt: skip
        return out
