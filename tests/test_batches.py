"""Batches of any structure and the two loss forms (`normtheory.batches`)."""

import collections
import dataclasses
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normtheory.batches import (
    ModelLoss,
    OutputsLoss,
    as_model_loss,
    call_model,
    check_reiterable,
    detached,
    first_tensor,
    is_single_batch,
    model_loss,
    num_examples,
    to_device,
)


class Encoding(collections.UserDict):
    """Stands in for a Hugging Face ``BatchEncoding``: a UserDict with a ``.to`` of its own."""

    def to(self, device):  # pragma: no cover - never called: it would mutate the batch
        raise AssertionError("to_device must not call the batch's own .to (it mutates)")


class Pair(NamedTuple):
    inputs: torch.Tensor
    targets: torch.Tensor


@dataclasses.dataclass
class Item:
    ids: torch.Tensor
    mask: torch.Tensor
    name: str = "x"


def _nested():
    x, y = torch.randn(4, 3), torch.arange(4)
    return {
        "pair": (x, y),
        "enc": Encoding({"input_ids": torch.ones(4, 5, dtype=torch.long)}),
        "named": Pair(x, y),
        "item": Item(torch.zeros(4, 2), torch.ones(4, 2), "keep"),
        "list": [x, 3, None, "s"],
        "ordered": collections.OrderedDict(a=x),
    }


def test_structures_are_kept_and_tensors_copied():
    batch = _nested()
    out = detached(batch)
    assert type(out["enc"]) is Encoding and type(out["named"]) is Pair
    assert type(out["item"]) is Item and out["item"].name == "keep"
    assert type(out["ordered"]) is collections.OrderedDict
    assert out["list"][1:] == [3, None, "s"]
    for a, b in zip(_leaves(batch), _leaves(out)):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    moved = to_device(batch, "cpu")  # already there: the very tensors, no copies
    assert moved["pair"][0] is batch["pair"][0] and type(moved["enc"]) is Encoding


def _leaves(batch):
    from normtheory.batches import tensors

    return list(tensors(batch))


def test_defaultdict_falls_back_to_dict():
    batch = collections.defaultdict(list, {"x": torch.ones(2)})
    out = to_device(batch, "cpu")
    assert isinstance(out, dict) and torch.equal(out["x"], torch.ones(2))


def test_num_examples_and_first_tensor():
    assert num_examples((torch.randn(7, 3), torch.arange(7))) == 7
    enc = Encoding({"input_ids": torch.ones(5, 9), "labels": torch.ones(5)})
    assert num_examples(enc) == 5 and first_tensor(enc) is enc["input_ids"]
    assert num_examples({"scale": torch.tensor(2.0), "x": torch.ones(3, 1)}) == 3
    with pytest.raises(ValueError, match="number of examples"):
        num_examples({"a": 1})


@pytest.mark.parametrize(
    "data, single",
    [
        (torch.ones(3), True),
        ((torch.ones(3), torch.ones(3)), True),
        (({"a": torch.ones(2)}, torch.ones(2)), True),  # (dict inputs, targets)
        ({"a": torch.ones(2)}, True),
        (Pair(torch.ones(1), torch.ones(1)), True),
        ([(torch.ones(1), torch.ones(1))] * 2, False),
        ([{"a": torch.ones(1)}], False),
        (torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4))), False),
    ],
)
def test_one_batch_or_many(data, single):
    assert is_single_batch(data) is single


class Keywords(nn.Module):
    def forward(self, x, scale=1.0):
        return x * scale


def test_call_model_conventions():
    m, x = Keywords(), torch.ones(2)
    assert torch.equal(call_model(m, x), x)
    assert torch.equal(call_model(m, {"x": x, "scale": 3.0}), 3 * x)
    assert torch.equal(call_model(m, (x, 2.0)), 2 * x)


def test_loss_forms():
    model = nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1])
    plain = as_model_loss(F.cross_entropy)
    assert isinstance(plain, OutputsLoss)
    expected = F.cross_entropy(model(x), y)
    assert torch.equal(plain(model, (x, y)), expected)

    def by_name(model, batch):  # first parameter named "model": the general form
        return F.cross_entropy(model(batch["x"]), batch["y"])

    general = as_model_loss(by_name)
    assert isinstance(general, ModelLoss) and not isinstance(general, OutputsLoss)
    assert torch.equal(general(model, {"x": x, "y": y}), expected)
    marked = model_loss(lambda m, b: F.cross_entropy(m(b["x"]), b["y"]))
    assert as_model_loss(marked) is marked and model_loss(marked) is marked
    with pytest.raises(ValueError, match="loss_fn\\(model, batch\\)"):
        plain(model, {"x": x, "y": y})


def test_reiterable_checks():
    check_reiterable([1, 2])
    with pytest.raises(ValueError, match="one-shot"):
        check_reiterable(b for b in [1, 2])
    ds = torch.utils.data.TensorDataset(torch.ones(4))
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="generator of its own"):
        check_reiterable(torch.utils.data.DataLoader(ds, shuffle=True, generator=gen))
    check_reiterable(torch.utils.data.DataLoader(ds, shuffle=True))
    with pytest.raises(ValueError, match="iterable of batches"):
        check_reiterable(5)
