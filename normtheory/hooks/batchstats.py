"""Hooks on batch statistics: elimination singularities of the normalization layers."""

from collections.abc import Iterable

from normtheory.checks import check_choice
from normtheory.hooks.base import Context, Hook, Record
from normtheory.measure.singularity import channel_health
from normtheory.optim import norm_layers
from normtheory.state import probe_forward


class Singularities(Hook):
    """Dead channels and StatDiff of every normalization layer, on a fixed probe batch.

    On its schedule (``after_step``), at ``start`` and at ``end`` it runs the probe through the
    model (train mode by default; everything restored) and records per norm layer (key = its
    name) the `ChannelHealth` summary of the layer's output: ``dead`` (fraction of channels off
    for every probe example after a ReLU), ``off`` (mean fraction of examples a channel is off),
    ``stat_diff`` (mean over channels of √(μ_c² + (σ_c − 1)²)) and ``mean_shift`` (mean μ_c/σ_c).
    "Off" assumes a ReLU follows the norm (placement ``norm_act``).

    Args:
        probe: (inputs, targets) or inputs.
        mode: ``"train"`` or ``"eval"``.
    """

    events = ("start", "after_step", "end")
    default_name = "singular"

    def __init__(self, *, probe, mode: str = "train", **kw):
        super().__init__(**kw)
        check_choice("mode", mode, ("train", "eval"))
        self.probe = probe[0] if isinstance(probe, tuple | list) else probe
        self.mode = mode

    def on(self, event: str, ctx: Context) -> Iterable[Record]:
        layers = norm_layers(ctx.model)
        outputs = probe_forward(ctx.model, self.probe, layers, train=self.mode == "train")
        return [
            (metric, name, value)
            for name, y in outputs.items()
            for metric, value in channel_health(y).summary().items()
        ]
