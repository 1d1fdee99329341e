"""Batch maps: how a framework's batch reaches today's hooks. `KeywordModel` is the keyword-called
model as a function of one tensor, sharing everything with the model and changing nothing."""

import pytest
import torch
from torch import nn

from normtheory.integrations import ArgBatch, KeywordBatch, KeywordModel


class Output(dict):
    """A Hugging Face-like output: keys readable as attributes."""

    __getattr__ = dict.get


class Toy(nn.Module):
    """A keyword-called classifier with an embedding, dropout and a root-level mode switch."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, 3)

    def forward(self, input_ids=None, labels=None, attention_mask=None):
        h = self.drop(self.emb(input_ids)).mean(dim=1)  # (B, 4)
        logits = self.head(h) * (1.0 if self.training else 2.0)  # reads the root's own flag
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return Output(logits=logits, loss=loss)


def _batch(**extra):
    gen = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(10, (5, 7), generator=gen),
        "labels": torch.arange(5) % 3,
        **extra,
    }


def test_keyword_model_shares_names_parameters_and_mode():
    torch.manual_seed(0)
    model = Toy()
    wrapped = KeywordModel(model)
    assert [n for n, _ in wrapped.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert all(a is b for a, b in zip(wrapped.parameters(), model.parameters()))
    wrapped.eval()
    assert not model.training and not model.drop.training
    wrapped.train()
    assert model.training and model.drop.training
    wrapped.close()


@pytest.mark.parametrize("train", [True, False])
def test_keyword_model_computes_the_models_logits(train):
    """Oracle: functional_call of the model itself, called by keyword, with the same RNG state."""
    torch.manual_seed(0)
    model = Toy().train(train)
    wrapped = KeywordModel(model)
    x = _batch()["input_ids"]
    params = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    state = torch.get_rng_state()
    got = torch.func.functional_call(wrapped, params, (x,))
    torch.set_rng_state(state)
    expected = torch.func.functional_call(model, params, kwargs={"input_ids": x}).logits
    assert torch.equal(got, expected)
    wrapped.close()


def test_training_forwards_are_announced_to_the_wrappers_hooks():
    """A training call model(**batch) runs the wrapper's forward pre-hooks on batch["input_ids"]
    (the same tensor), computing nothing more; eval calls and the wrapper's own calls do not."""
    torch.manual_seed(0)
    model = Toy()
    wrapped = KeywordModel(model)
    seen = []
    wrapped.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    batch = _batch()
    state = torch.get_rng_state()
    out = model(**batch)
    assert len(seen) == 1 and seen[0] is batch["input_ids"]
    torch.set_rng_state(state)
    wrapped.close()
    assert torch.equal(model(**batch).logits, out.logits)  # the announcement drew no RNG
    seen.clear()
    wrapped = KeywordModel(model)
    wrapped.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    wrapped(batch["input_ids"])  # the wrapper's own call: announced once, by itself
    model.eval()
    model(**batch)
    assert len(seen) == 1
    wrapped.close()
    model.train()
    model(**batch)
    assert len(seen) == 1  # closed: no more announcements


def test_keyword_batch_split_checks_the_keys_it_leaves_out():
    kb = KeywordBatch()
    batch = _batch(attention_mask=torch.ones(5, 7, dtype=torch.long), num_items_in_batch=35)
    x, y = kb.split(batch)
    assert x is batch["input_ids"] and y is batch["labels"]
    assert kb.split({"input_ids": x})[1] is None
    padded = _batch(attention_mask=torch.ones(5, 7, dtype=torch.long))
    padded["attention_mask"][0, -1] = 0
    with pytest.raises(ValueError, match="'attention_mask' holds padding"):
        kb.split(padded)
    with pytest.raises(ValueError, match="'pixel_mask'"):
        kb.split(_batch(pixel_mask=torch.zeros(5)))
    assert torch.equal(
        KeywordBatch(ignore=["pixel_mask"]).split(_batch(pixel_mask=torch.zeros(5)))[0], x
    )
    with pytest.raises(ValueError, match="its keys: input_ids, labels"):
        KeywordBatch(input_key="pixel_values").split(_batch())
    with pytest.raises(ValueError, match="use ArgBatch"):
        kb.split((x, y))


def test_keyword_batch_reads_outputs_and_loss():
    kb = KeywordBatch()
    out = Output(
        logits=torch.ones(2, 3, requires_grad=True), loss=torch.tensor(0.5, requires_grad=True)
    )
    assert (
        torch.equal(kb.outputs_of(out), torch.ones(2, 3)) and not kb.outputs_of(out).requires_grad
    )
    assert float(kb.loss_of(out)) == 0.5 and kb.loss_of(Output(logits=out.logits)) is None


def test_arg_batch_split():
    x, y = torch.randn(4, 2), torch.arange(4)
    assert ArgBatch().split((x, y, "meta")) == (x, y)
    assert ArgBatch("x", "y").split({"x": x, "y": y}) == (x, y)
    assert ArgBatch().split(x) == (x, None)
    with pytest.raises(ValueError, match="cannot read a batch"):
        ArgBatch("x", "y").split((x, y))
