"""How a framework's batch reaches the hooks: the small, overridable mapping of the callbacks.

The hooks take a batch as ``(inputs, targets)`` tensors and call the model as ``model(inputs)``,
with a loss ``loss_fn(outputs, targets)``. A training framework's batch may be a tuple or a
dict (a Hugging Face `BatchEncoding`), and its model may be called as ``model(**batch)``,
returning an output object. A batch map bridges the two:

- ``split(batch) -> (inputs, targets)``: the tensors the hooks get (``targets`` may be None);
- ``measured(module) -> nn.Module``: what the hooks call, ``measured(inputs) -> outputs``;
- ``inputs_of(args, kwargs)``, ``outputs_of(output)``, ``loss_of(output)``: read a training
  forward call of the module (its inputs, to recognize the batch; its outputs and loss, for
  `LossAccuracy`).

`ArgBatch` (the Lightning default) is for models called as ``model(x)`` on tuple batches
``(x, y, ...)`` (or dict batches, by key). `KeywordBatch` (the Hugging Face default) is for
models called as ``model(**batch)``: the hooks see ``batch["input_ids"]`` and ``batch["labels"]``,
and call `KeywordModel`, ``model(input_ids=x).logits``. Write your own class with these five
methods for any other batch.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn


class ArgBatch:
    """Batches ``(inputs, targets, ...)`` (or dicts) for a model called as ``model(inputs)``.

    Args:
        inputs, targets: the positions (tuple batches) or keys (dict batches) of the model's
            input and of the targets; ``targets=None``: the batch has none.
    """

    def __init__(self, inputs: int | str = 0, targets: int | str | None = 1):
        self.inputs, self.targets = inputs, targets

    def split(self, batch: Any) -> tuple[Tensor, Tensor | None]:
        if isinstance(batch, Tensor):
            return batch, None
        try:
            x = batch[self.inputs]
            y = None if self.targets is None else batch[self.targets]
        except (KeyError, IndexError, TypeError) as error:
            raise ValueError(
                f"ArgBatch(inputs={self.inputs!r}, targets={self.targets!r}) cannot read a batch "
                f"of type {type(batch).__name__} ({error!r}); give the batch's positions or keys, "
                "or a batch map of your own (normtheory.integrations.batches)"
            ) from None
        return x, y

    def measured(self, module: nn.Module) -> nn.Module:
        return module

    def inputs_of(self, args: tuple, kwargs: dict) -> Any:
        return args[0] if args else None

    def outputs_of(self, output: Any) -> Tensor | None:
        return output.detach() if isinstance(output, Tensor) else None

    def loss_of(self, output: Any) -> Tensor | None:
        return None

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"ArgBatch(inputs={self.inputs!r}, targets={self.targets!r})"


_NEUTRAL = {"attention_mask": 1, "token_type_ids": 0}  # keys whose value equals the default
_LOSS_ONLY = ("num_items_in_batch",)  # the Trainer's: scales the model's loss, not its logits


class KeywordBatch:
    """Dict batches (a Hugging Face `BatchEncoding`) for a model called as ``model(**batch)``.

    The hooks get ``batch[input_key]`` as inputs and ``batch[target_key]`` as targets, and call
    the model as ``getattr(model(**{input_key: x}), output)`` (`KeywordModel`): with the one
    input only. So every other key of a training batch must be one the model's default equals:
    an ``attention_mask`` of ones (no padding), ``token_type_ids`` of zeros; a batch with
    padding, or with any other key, raises naming it, since the hooks' measurements would not be
    of the loss the model trains on (the check reads one boolean per such key and step from the
    device). Keys in `ignore` are passed over unchecked, and so is the `Trainer`'s
    ``num_items_in_batch`` (it scales the model's own loss, not the logits).

    Args:
        input_key: the model's main input (``input_ids``; ``pixel_values`` for vision models).
        target_key: the targets (``labels``); absent from a batch: no targets.
        output: the attribute of the model's output the hooks' ``loss_fn`` takes (``logits``).
        ignore: batch keys to pass over (you vouch the model's default gives the same outputs).
    """

    def __init__(
        self,
        input_key: str = "input_ids",
        target_key: str = "labels",
        output: str = "logits",
        ignore: Sequence[str] = (),
    ):
        self.input_key, self.target_key, self.output = input_key, target_key, output
        self.ignore = tuple(ignore)
        self._models: list[KeywordModel] = []

    def split(self, batch: Any) -> tuple[Tensor, Tensor | None]:
        if not isinstance(batch, Mapping):
            raise ValueError(
                f"KeywordBatch reads dict batches, got {type(batch).__name__}; for tuple batches "
                "use ArgBatch"
            )
        if self.input_key not in batch:
            raise ValueError(
                f"KeywordBatch(input_key={self.input_key!r}): the batch has no such key; its keys: "
                f"{', '.join(map(str, batch))}"
            )
        skip = {self.input_key, self.target_key, *self.ignore, *_LOSS_ONLY}
        for key, value in batch.items():
            if key in skip:
                continue
            neutral = _NEUTRAL.get(key)
            if (
                neutral is None
                or not isinstance(value, Tensor)
                or not bool((value == neutral).all())
            ):
                what = "padding (not all ones)" if key == "attention_mask" else "a value"
                raise ValueError(
                    f"KeywordBatch: the batch's {key!r} holds {what} that the hooks would leave "
                    f"out: they call the model with {self.input_key!r} alone. Train on batches "
                    f"without it, list it in KeywordBatch(ignore=[{key!r}]) if the model's default "
                    "gives the same outputs, or write a batch map of your own"
                )
        return batch[self.input_key], batch.get(self.target_key)

    def measured(self, module: nn.Module) -> "KeywordModel":
        model = KeywordModel(module, self.input_key, self.output)
        self._models.append(model)
        return model

    def inputs_of(self, args: tuple, kwargs: dict) -> Any:
        return kwargs.get(self.input_key, args[0] if args else None)

    def outputs_of(self, output: Any) -> Tensor | None:
        value = _field(output, self.output)
        return value.detach() if isinstance(value, Tensor) else None

    def loss_of(self, output: Any) -> Tensor | None:
        value = _field(output, "loss")
        return value.detach() if isinstance(value, Tensor) else None

    def close(self) -> None:
        """Removes the forward hooks of the `KeywordModel`s it made."""
        for model in self._models:
            model.close()
        self._models = []

    def __repr__(self) -> str:
        return (
            f"KeywordBatch(input_key={self.input_key!r}, target_key={self.target_key!r}, "
            f"output={self.output!r}, ignore={self.ignore!r})"
        )


def _field(output: Any, name: str) -> Any:
    if isinstance(output, Mapping):
        return output.get(name)
    return getattr(output, name, None)


class KeywordModel(nn.Module):
    """A keyword-called model as a function of one tensor, as the hooks call models:
    ``m(x) = getattr(model(**{key: x}), output)``.

    It shares the model's parameters, buffers, submodules and ``training`` flag (the same
    objects, under the same names), so a hook's records name the model's own layers and
    parameters, ``torch.func.functional_call(m, ...)`` swaps the model's weights, and setting its
    mode (``m.eval()``, or a measurement restoring it) sets the model's. It owns no state.

    The model itself is what training calls (``model(**batch)``), never this module; so that a
    hook watching this module's forwards (`OrthogonalWeightNorm`) sees them, a forward
    pre-hook on the model *announces* each training forward: it calls this module on
    ``batch[key]`` in a mode that runs its forward pre-hooks and computes nothing. `close`
    removes that pre-hook.
    """

    def __init__(self, model: nn.Module, key: str = "input_ids", output: str = "logits"):
        super().__init__()
        object.__setattr__(self, "wrapped", model)  # not a submodule: its children are ours
        self._parameters, self._buffers, self._modules = (
            model._parameters,
            model._buffers,
            model._modules,
        )
        self._non_persistent_buffers_set = model._non_persistent_buffers_set
        self.key, self.output = key, output
        self._inner = False  # the model is running inside our forward (a measurement)
        self._announcing = False
        self._handle = model.register_forward_pre_hook(self._announce, with_kwargs=True)

    @property
    def training(self) -> bool:  # the model's own flag, read and written through
        return self.wrapped.training

    @training.setter
    def training(self, mode: bool) -> None:
        if "wrapped" in self.__dict__:  # nn.Module.__init__ sets it before there is a model
            self.wrapped.training = mode

    def forward(self, x: Tensor) -> Tensor | None:
        if self._announcing:
            return None
        self._inner = True
        try:
            out = self.wrapped(**{self.key: x})
        finally:
            self._inner = False
        value = _field(out, self.output)
        if not isinstance(value, Tensor):
            raise ValueError(
                f"KeywordModel: the model's output has no tensor {self.output!r} (output type "
                f"{type(out).__name__}); set KeywordBatch(output=...)"
            )
        return value

    def _announce(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self._inner or not module.training:
            return
        x = kwargs.get(self.key, args[0] if args else None)
        if isinstance(x, Tensor):
            self._announcing = True
            try:
                self(x)
            finally:
                self._announcing = False

    def close(self) -> None:
        self._handle.remove()
