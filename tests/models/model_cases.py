"""Shared builders of the model tests (``test_models.py``, ``test_resnet.py``, ...): tiny models
seeded the same way, the hidden weight layers, and the order a forward pass calls the leaves in."""

import torch
from torch import nn

from normtheory.models import build_model
from normtheory.norms import WSConv1d, WSConv2d, WSLinear

WS_TYPES = (WSLinear, WSConv1d, WSConv2d)
WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, *WS_TYPES)
BATCH = 4
NUM_CLASSES = 3


def norm_kw(spec: str) -> dict:
    """Options that fit width 8 and a batch of 4 (widths 8, 16, 32 in the resnet)."""
    options = {
        "group": {"groups": 4},
        "batch_group": {"groups": 4},
        "ghost_batch": {"ghost_size": 2},
    }
    return options.get(spec.split("+")[0], {})


def build(arch="convnet", in_shape=(1, 8, 8), norm="batch", **kw):
    torch.manual_seed(0)
    kw.setdefault("width", 8)
    kw.setdefault("depth", 8 if arch == "resnet" else 3)
    kw.setdefault("norm_kw", norm_kw(norm))
    return build_model(arch, norm=norm, in_shape=in_shape, num_classes=NUM_CLASSES, **kw)


def hidden_weights(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, WEIGHT_TYPES) and n != "head"}


def call_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the leaf modules in the order the forward pass calls them (oracle for order)."""
    order, handles = [], []
    for name, module in model.named_modules():
        if not list(module.children()):
            hook = module.register_forward_hook(lambda m, i, o, name=name: order.append(name))
            handles.append(hook)
    model(x)
    for handle in handles:
        handle.remove()
    return order
