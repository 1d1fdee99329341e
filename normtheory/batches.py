"""Batches of any structure and losses of either form: what every measure and hook accepts.

A *batch* is whatever a training loop feeds its model: a tensor, a tuple or list
``(inputs, targets)``, a dict (``{"input_ids": ..., "labels": ...}``), a Hugging Face
``BatchEncoding`` (a `collections.abc.Mapping`), a namedtuple or a dataclass, nested to any
depth. Nothing here imports a framework: structures are recognized by duck typing, and every
non-tensor leaf (ints, strings, None) is passed through as it is.

A *loss* comes in one of two forms, both accepted wherever a ``loss_fn`` is asked for:

- ``loss_fn(model, batch) -> scalar``: the general form, for any batch and any model (e.g.
  ``lambda model, batch: model(**batch).loss`` for a Hugging Face model). A function is taken
  to be of this form when it is wrapped by `model_loss`, or when its first parameter is named
  ``model``.
- ``loss_fn(outputs, targets) -> scalar`` (``F.cross_entropy``): the convenience form, for
  batches ``(inputs, targets)``; it is ``loss_fn(call_model(model, inputs), targets)``.

Either must return the *mean* loss over the batch's examples, so that the loss over several
batches, Σ_b n_b L_b / Σ_b n_b with n_b = `num_examples` (batch b), is the mean over all of
them.

*One batch or many* (`is_single_batch`): a tensor, a mapping, a namedtuple, a dataclass, or a
tuple/list holding at least one tensor is one batch; anything else iterable (a list of batches,
a ``DataLoader``) is an iterable of batches. A batch that would read as many (a tuple of two
dicts) is passed as a list of one batch, ``[batch]``.
"""

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping

import torch
from torch import Tensor, nn


def _is_namedtuple(obj: object) -> bool:
    return isinstance(obj, tuple) and hasattr(obj, "_fields")


def _is_dataclass_instance(obj: object) -> bool:
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type)


def map_tensors(batch: object, fn: Callable[[Tensor], Tensor]) -> object:
    """`batch` with `fn` applied to every tensor, its structure and container types kept.

    Mappings are rebuilt as their own type (``type(batch)(items)``: dict, OrderedDict,
    UserDict, ``BatchEncoding``) or, when that constructor does not take a dict, as a dict;
    namedtuples and dataclasses as their own type; other leaves are returned unchanged.
    """
    if isinstance(batch, Tensor):
        return fn(batch)
    if isinstance(batch, Mapping):
        items = {k: map_tensors(v, fn) for k, v in batch.items()}
        if type(batch) is dict:
            return items
        try:
            return type(batch)(items)
        except (TypeError, ValueError):
            return items
    if _is_namedtuple(batch):
        return type(batch)(*(map_tensors(v, fn) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(map_tensors(v, fn) for v in batch)
    if _is_dataclass_instance(batch):
        changes = {
            f.name: map_tensors(getattr(batch, f.name), fn)
            for f in dataclasses.fields(batch)
            if f.init
        }
        return dataclasses.replace(batch, **changes)
    return batch


def to_device(batch: object, device: torch.device | str) -> object:
    """`batch` with every tensor on `device` (a tensor already there is not copied)."""
    return map_tensors(batch, lambda t: t.to(device))


def detached(batch: object) -> object:
    """A copy of `batch` whose tensors are detached clones (a probe kept across steps, safe
    from in-place changes the loop makes to its batch)."""
    return map_tensors(batch, lambda t: t.detach().clone())


def tensors(batch: object) -> Iterator[Tensor]:
    """The tensors of `batch`, depth-first, mappings in their key order."""
    if isinstance(batch, Tensor):
        yield batch
    elif isinstance(batch, Mapping):
        for v in batch.values():
            yield from tensors(v)
    elif isinstance(batch, (tuple, list)):
        for v in batch:
            yield from tensors(v)
    elif _is_dataclass_instance(batch):
        for f in dataclasses.fields(batch):
            yield from tensors(getattr(batch, f.name))


def first_tensor(batch: object) -> Tensor | None:
    """The first tensor of `batch` (`tensors` order), or None."""
    return next(tensors(batch), None)


def num_examples(batch: object) -> int:
    """n, the number of examples of `batch`: the leading size of its first tensor with at
    least one dimension (``input_ids`` of a tokenized batch, the inputs of ``(x, y)``).

    Raises:
        ValueError: the batch holds no such tensor.
    """
    for t in tensors(batch):
        if t.ndim >= 1:
            return int(t.shape[0])
    raise ValueError(
        f"cannot tell the number of examples of a batch of type {type(batch).__name__}: it "
        "holds no tensor with a batch dimension"
    )


def is_single_batch(data: object) -> bool:
    """Whether `data` is one batch rather than an iterable of batches (see the module doc)."""
    if isinstance(data, Tensor | Mapping) or _is_namedtuple(data) or _is_dataclass_instance(data):
        return True
    if isinstance(data, (tuple, list)):
        return any(isinstance(v, Tensor) for v in data)
    return False


def call_model(model: nn.Module, inputs: object) -> object:
    """The model's output on `inputs`: ``model(**inputs)`` for a mapping (keyword inputs, as a
    tokenized batch), ``model(*inputs)`` for a tuple or list, ``model(inputs)`` otherwise."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)) and not _is_namedtuple(inputs):
        return model(*inputs)
    return model(inputs)


class ModelLoss:
    """A loss of the general form ``fn(model, batch) -> mean loss`` (see the module doc).

    Use it as a decorator (`model_loss`) or wrap a function: ``ModelLoss(lambda model, batch:
    model(**batch).loss)``.
    """

    def __init__(self, fn: Callable[[nn.Module, object], Tensor]):
        if not callable(fn):
            raise TypeError(f"a loss must be callable, got {fn!r}")
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __call__(self, model: nn.Module, batch: object) -> Tensor:
        return self.fn(model, batch)

    def __repr__(self) -> str:
        return f"ModelLoss({self.fn!r})"


def model_loss(fn: Callable[[nn.Module, object], Tensor]) -> ModelLoss:
    """Marks `fn(model, batch) -> mean loss` as a loss of the general form (a decorator)."""
    return fn if isinstance(fn, ModelLoss) else ModelLoss(fn)


class OutputsLoss(ModelLoss):
    """A loss ``loss_fn(outputs, targets)`` as ``(model, (inputs, targets)) -> loss``."""

    def __init__(self, loss_fn: Callable[[Tensor, Tensor], Tensor]):
        super().__init__(loss_fn)

    def __call__(self, model: nn.Module, batch: object) -> Tensor:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError(
                f"a loss of the form loss_fn(outputs, targets) needs (inputs, targets) batches, "
                f"got a {type(batch).__name__}; for other batches give a loss of the form "
                "loss_fn(model, batch) (normtheory.batches.model_loss)"
            )
        inputs, targets = batch
        return self.fn(call_model(model, inputs), targets)

    def __repr__(self) -> str:
        return f"OutputsLoss({self.fn!r})"


def _takes_model(fn: Callable) -> bool:
    """Whether `fn`'s first parameter is named ``model``."""
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    return bool(params) and params[0] == "model"


def as_model_loss(loss_fn: Callable) -> ModelLoss:
    """Either loss form as one ``loss(model, batch) -> mean loss`` (see the module doc)."""
    if isinstance(loss_fn, ModelLoss):
        return loss_fn
    if _takes_model(loss_fn):
        return ModelLoss(loss_fn)
    return OutputsLoss(loss_fn)


def batch_list(data: object) -> list:
    """The batches of `data` as a list: ``[data]`` for one batch (`is_single_batch`)."""
    return [data] if is_single_batch(data) else list(data)


def check_reiterable(data: Iterable) -> None:
    """Raises unless every pass over `data` gives the same batches: a one-shot iterator
    (a generator) gives them only once, and a ``DataLoader`` that shuffles with a generator
    of its own draws a new order, and new batches, on every pass."""
    if not isinstance(data, Iterable) or isinstance(data, str | bytes):
        raise ValueError(
            f"data must be one batch or an iterable of batches, got a {type(data).__name__}"
        )
    if iter(data) is data:
        raise ValueError(
            "data is a one-shot iterator (a generator?): a measurement passes over the batches "
            "several times; give a list of batches or a DataLoader"
        )
    sampler = getattr(data, "sampler", None)
    if isinstance(sampler, torch.utils.data.RandomSampler) and sampler.generator is not None:
        raise ValueError(
            "data is a DataLoader that shuffles with a generator of its own, so every pass "
            "would see other batches; use shuffle=False (or a shuffling DataLoader without "
            "generator=: its order comes from the global RNG, which the measurement resets "
            "before every pass)"
        )
