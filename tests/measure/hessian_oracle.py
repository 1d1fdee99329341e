"""The oracle of the curvature tests: a dense float64 Hessian from autograd, on tiny networks.

The oracle builds the loss as one function of the flat weights, runs its forward pass ONCE
(so dropout masks are drawn once, from the RNG state the measurement will also start from) and
differentiates it twice with `torch.autograd.functional.hessian`. Agreement therefore also
shows that the measurements see one fixed loss: same masks, batch statistics, frozen buffers.
The `case` fixture (conftest.py) builds every model of `CASES` with its dense Hessian.
"""

import copy

import torch
import torch.nn.functional as F

from normtheory.models import build_model

CASES = {  # name: (arch, norm, build options, mode)
    "bn_train": ("convnet", "batch", {}, "train"),
    "bn_eval": ("convnet", "batch", {}, "eval"),
    "gn": ("convnet", "group", {"norm_kw": {"groups": 2}}, "train"),
    "dropout": ("mlp", "batch", {"placement": "ic", "dropout_keep": 0.7}, "train"),
}
IN_SHAPES = {"convnet": (1, 6, 6), "mlp": (10,)}
NUM_CLASSES = 3


def _data(in_shape, sizes=(8, 6), seed=1):
    """Two batches of unequal size, so the batch-size weighting matters."""
    gen = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(size, *in_shape, generator=gen, dtype=torch.float64),
            torch.randint(0, NUM_CLASSES, (size,), generator=gen),
        )
        for size in sizes
    ]


def flat_names(model):
    return [(name, p.numel()) for name, p in model.named_parameters()]


def _dense_loss(model, data, mode, rng):
    """w -> L(w): a copy of the model, fresh buffer copies, RNG reset to `rng` before forward."""
    model = copy.deepcopy(model).train(mode == "train")
    names, sizes = zip(*flat_names(model))
    shapes = [p.shape for p in model.parameters()]
    buffers = dict(model.named_buffers())
    total = sum(len(x) for x, _ in data)

    def loss(w):
        torch.set_rng_state(rng)
        state = {n: t.view(s) for n, t, s in zip(names, torch.split(w, sizes), shapes)}
        state.update({n: b.clone() for n, b in buffers.items()})
        outs = [torch.func.functional_call(model, state, (x,)) for x, _ in data]
        return sum(F.cross_entropy(o, y) * len(y) / total for o, (_, y) in zip(outs, data))

    return loss


def dense_hessian(model, data, mode, rng):
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    with torch.random.fork_rng():
        return torch.autograd.functional.hessian(_dense_loss(model, data, mode, rng), w)


def build(name, seed=0):
    arch, norm, kw, mode = CASES[name]
    torch.manual_seed(seed)
    model = build_model(
        arch, norm=norm, in_shape=IN_SHAPES[arch], num_classes=NUM_CLASSES, width=4, depth=2, **kw
    ).double()
    data = _data(IN_SHAPES[arch])
    with torch.no_grad():  # non-trivial running statistics for eval mode
        model.train()
        for x, _ in _data(IN_SHAPES[arch], seed=2):
            model(x + 0.5)
    return model, data, mode


def call(fn, case, **kw):
    """Calls a measurement from the RNG state the oracle used (dropout masks match)."""
    torch.set_rng_state(case.rng)
    return fn(case.model, F.cross_entropy, case.data, mode=case.mode, **kw)
