"""The loss as a fixed function of a flat parameter vector: gradients and Hessian-vector products.

Curvature measurements query the same loss many times (one Hessian-vector product per Lanczos
step), so the loss must not change between queries. In train mode it would, twice over:
BatchNorm updates its running statistics on every forward pass, and dropout draws fresh masks.
`fixed_loss` freezes both. Every forward pass goes through `torch.func.functional_call` with
fresh copies of the buffers (running statistics are read but never written), and the torch RNG
state is reset to the one found on entry before each pass over the batches, so the same dropout
masks are drawn every time. On exit `normtheory.state.preserved` puts mode, buffers, ``.grad``
and the RNG streams back exactly.

The data is one batch of any structure or a re-iterable of batches (a list, a ``DataLoader``:
`normtheory.batches`), and the loss either form, ``loss_fn(model, batch)`` or
``loss_fn(outputs, targets)``. The loss over batches of n_b examples is
L(w) = Σ_b n_b L_b(w) / Σ_b n_b, with L_b the mean loss of batch b, so a partial last batch
counts by its size: L is the mean over all examples. Several batches are streamed, one on the
device at a time. In train mode each batch is normalized with its own batch statistics (BN
over the dataset is the average of per-batch losses, as in training, not one giant batch).
Hessian-vector products are double backward passes (Pearlmutter 1994):
Hv = ∇_w (∇_w L(w) · v), which works for every norm layer.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from normtheory.batches import (
    ModelLoss,
    as_model_loss,
    check_reiterable,
    is_single_batch,
    num_examples,
    to_device,
)
from normtheory.checks import check_choice
from normtheory.state import preserved

MODES = ("eval", "train")

# ``loss_fn(outputs, targets)`` or ``loss_fn(model, batch)`` (`normtheory.batches`)
LossFn = Callable[..., Tensor]


def select_params(model: nn.Module, params: str | Iterable[str] | None) -> list[str]:
    """Names of the parameters a measurement differentiates, in `named_parameters` order.

    Args:
        model: the network.
        params: None (every parameter with ``requires_grad``), or names, each a parameter
            (``"conv1.weight"``) or a module (``"conv1"``, ``"stage1.block1"``: all its
            parameters). A single string counts as one name.

    Raises:
        ValueError: for an unknown name (listing the valid module names), a module without
            parameters, or an empty selection.
    """
    named = dict(model.named_parameters())
    if params is None:
        chosen = {name for name, p in named.items() if p.requires_grad}
    else:
        modules = dict(model.named_modules())
        chosen = set()
        for name in [params] if isinstance(params, str) else list(params):
            if name in named:
                chosen.add(name)
            elif isinstance(name, str) and name and name in modules:
                inside = [n for n, _ in modules[name].named_parameters(prefix=name)]
                if not inside:
                    raise ValueError(f"module {name!r} has no parameters")
                chosen.update(inside)
            else:
                valid = ", ".join(repr(m) for m in modules if m)
                raise ValueError(
                    f"unknown parameter or module name {name!r}; valid module names: {valid}"
                )
    if not chosen:
        raise ValueError(f"no parameters selected (params={params!r})")
    return [name for name in named if name in chosen]


def generator(device: torch.device, seed: int) -> torch.Generator:
    """A local generator on `device`, so probes never touch the global RNG."""
    return torch.Generator(device=device).manual_seed(int(seed))


def rademacher(shape: tuple[int, ...], like: Tensor, gen: torch.Generator) -> Tensor:
    """Entries ±1 with probability ½ each, with the dtype and device of `like`."""
    draws = torch.empty(shape, dtype=like.dtype, device=like.device)
    return draws.bernoulli_(0.5, generator=gen).mul_(2).sub_(1)


class BoundLoss(nn.Module):
    """The loss as a module of the model, so `functional_call` can swap the model's weights
    (its parameters are the model's, prefixed ``model.``) around a loss of any form."""

    def __init__(self, model: nn.Module, loss: ModelLoss):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, batch: object) -> Tensor:
        return self.loss(self.model, batch)


class FixedLoss:
    """L(w) over the selected parameters, with frozen batch-norm buffers and dropout masks.

    Built by `fixed_loss`, which also sets the mode and restores the model afterwards. Flat
    vectors follow the order of `names`, each parameter flattened row-major.

    One batch is moved to the device once and its first-order graph kept for all products.
    An iterable of batches is streamed: every pass (gradient, Hessian-vector product) iterates
    it afresh, moves one batch at a time to the device, and keeps one batch's graph, so the
    device holds one batch whatever the size of the data. Batch b weighs n_b / Σ n_b
    (`normtheory.batches.num_examples`): per batch when the sizes are known up front (one
    batch, a list of batches), else applied to each pass's sums once the pass has counted them.

    Attributes:
        names: the selected parameter names.
        dim: n, the number of selected scalars.
        device, dtype: those of the first selected parameter; all vectors live there.
        n_hvp, n_grad: Hessian-vector products and gradients evaluated so far.
        n_examples: Σ n_b over the batches (for a DataLoader: known after the first pass).
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, data: object, names: list[str]):
        self.model, self.names = model, names
        self._bound = BoundLoss(model, as_model_loss(loss_fn))
        named = dict(model.named_parameters())
        self._params = [named[name] for name in names]
        self._fixed = {n: p.detach() for n, p in named.items() if n not in set(names)}
        self._buffers = dict(model.named_buffers())
        self._sizes = [p.shape for p in self._params]
        first = self._params[0]
        self.dim = sum(p.numel() for p in self._params)
        self.device, self.dtype = first.device, first.dtype
        self._single = is_single_batch(data)
        self.n_examples: int | None = None
        if self._single:
            self._data = [to_device(data, self.device)]
            self.n_examples = num_examples(self._data[0])
        else:
            check_reiterable(data)
            self._data = data
            if isinstance(data, (list, tuple)):  # sizes known up front: weigh each batch
                self.n_examples = sum(num_examples(b) for b in data) or None
        self._known = self.n_examples is not None  # else: sums, divided after each pass
        # RNG state for the first forward pass; reset before every pass -> same masks.
        self._cpu_rng = torch.get_rng_state()
        cuda = self.device.type == "cuda"
        self._cuda_rng = torch.cuda.get_rng_state(self.device) if cuda else None
        self._graph = None  # cached (leaves, grads) for a single batch at the current weights
        self.n_hvp = self.n_grad = 0

    def flat_params(self) -> Tensor:
        """The current values of the selected parameters as one detached vector (n,)."""
        return torch.cat([p.detach().reshape(-1) for p in self._params]).clone()

    def diagonal(self, metric: Mapping[str, Tensor] | None) -> Tensor | None:
        """A per-parameter scale ``{name: tensor broadcastable to the parameter}`` as one flat
        vector (n,) over the selected parameters (1 where a name is absent); None stays None."""
        if metric is None:
            return None
        parts = [
            torch.as_tensor(metric[n], dtype=self.dtype, device=self.device).expand(p.shape)
            if n in metric
            else torch.ones(p.shape, dtype=self.dtype, device=self.device)
            for n, p in zip(self.names, self._params)
        ]
        return torch.cat([part.reshape(-1) for part in parts])

    def unflatten(self, v: Tensor) -> list[Tensor]:
        """Splits a flat (n,) vector into tensors shaped like the selected parameters."""
        parts = torch.split(v, [s.numel() for s in self._sizes])
        return [part.view(size) for part, size in zip(parts, self._sizes)]

    def _passes(self, w: Tensor | None) -> Iterator[tuple[list[Tensor], Tensor]]:
        """Yields (leaves, weighted L_b) batch by batch, forward pass by forward pass: the
        weight is n_b / Σ n_b when the sizes are known up front (one batch: 1; a list of
        batches), else n_b, and the pass counts Σ n_b into `n_examples` (see `_scale`).

        The leaves are fresh tensors requiring grad that hold w (or the current weights), so
        gradients never reach ``.grad``; buffers are copied, so running statistics stay put.
        The RNG is reset before the data is iterated, so a DataLoader that shuffles from the
        global RNG gives the same batches on every pass.
        """
        torch.set_rng_state(self._cpu_rng)
        if self._cuda_rng is not None:
            torch.cuda.set_rng_state(self._cuda_rng, self.device)
        values = [p.detach() for p in self._params] if w is None else self.unflatten(w)
        count = 0
        for batch in self._data:
            if not self._single:
                batch = to_device(batch, self.device)
            leaves = [v.detach().requires_grad_() for v in values]
            state = {f"model.{n}": t for n, t in self._fixed.items()}
            state.update((f"model.{n}", t) for n, t in zip(self.names, leaves))
            state.update(
                (f"model.{n}", b.clone()) for n, b in self._buffers.items() if b is not None
            )
            loss = torch.func.functional_call(self._bound, state, (batch,), tie_weights=False)
            if loss.ndim != 0:
                raise ValueError(
                    f"the loss must be a scalar (the mean over the batch), got shape "
                    f"{tuple(loss.shape)}"
                )
            if self._single:
                yield leaves, loss
                continue
            n = num_examples(batch)
            count += n
            yield leaves, loss * (n / self.n_examples if self._known else n)
        if self.n_examples is None:
            if count == 0:
                raise ValueError("data holds no batches")
            self.n_examples = count

    def _scale(self) -> float:
        """The factor that turns a pass's sums into means: 1 / Σ n_b when the batches were
        weighted by n_b alone (an iterable of unknown size), else 1."""
        return 1.0 if self._known else 1.0 / self.n_examples

    def loss_grad(self, w: Tensor | None = None) -> tuple[float, Tensor]:
        """L(w) and ∇L(w) (n,) at flat weights `w` (default: the model's current weights)."""
        total, grad = 0.0, torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for leaves, loss in self._passes(w):
            grads = torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)
            grad += torch.cat([g.reshape(-1) for g in grads])
            total += loss.item()
        self.n_grad += 1
        if self._known:
            return total, grad
        return total * self._scale(), grad.mul_(self._scale())

    def hvp(self, v: Tensor) -> Tensor:
        """H v (n,) at the current weights, H = ∇²L, by double backward.

        With one batch the first-order graph is built once and reused (as PyHessian does);
        with an iterable of batches it is rebuilt per batch and product, so memory stays one
        batch's graph (and one batch on the device).
        """
        parts = self.unflatten(v.to(self.dtype))
        if self._single:
            if self._graph is None:
                self._graph = [
                    self._first_order(leaves, loss) for leaves, loss in self._passes(None)
                ]
            graphs = self._graph
        else:
            graphs = (self._first_order(leaves, loss) for leaves, loss in self._passes(None))
        out = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for leaves, grads in graphs:
            live = [(g, p) for g, p in zip(grads, parts) if g.requires_grad]
            if not live:
                continue
            hv = torch.autograd.grad(
                [g for g, _ in live],
                leaves,
                grad_outputs=[p for _, p in live],
                retain_graph=self._single,
                allow_unused=True,
                materialize_grads=True,
            )
            out += torch.cat([h.reshape(-1) for h in hv])
        self.n_hvp += 1
        return out if self._known else out.mul_(self._scale())

    @staticmethod
    def _first_order(leaves: list[Tensor], loss: Tensor) -> tuple[list[Tensor], tuple]:
        grads = torch.autograd.grad(
            loss, leaves, create_graph=True, allow_unused=True, materialize_grads=True
        )
        return leaves, grads


@contextmanager
def fixed_loss(
    model: nn.Module,
    loss_fn: LossFn,
    data: object,
    *,
    mode: str = "train",
    params: str | Iterable[str] | None = None,
) -> Iterator[FixedLoss]:
    """Context in which `model` is in `mode` and the loss is a fixed function of the weights.

    Args:
        model: the network; its parameters are never written.
        loss_fn: ``loss_fn(model, batch)`` or ``loss_fn(outputs, targets)`` -> mean loss of a
            batch (`normtheory.batches`).
        data: one batch of any structure, or a re-iterable of batches (a list, a
            ``DataLoader``), streamed one batch at a time.
        mode: ``"train"`` (norms use batch statistics, dropout active with frozen masks) or
            ``"eval"``.
        params: parameter selection, see `select_params`.

    Yields:
        A `FixedLoss`. On exit, train/eval flags, buffers, ``.grad`` and RNG streams are as
        they were on entry, even if the body raises.
    """
    check_choice("mode", mode, MODES)
    names = select_params(model, params)
    with preserved(model):
        model.train(mode == "train")
        yield FixedLoss(model, loss_fn, data, names)
