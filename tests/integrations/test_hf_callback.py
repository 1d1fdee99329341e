"""The Hugging Face `Trainer` callback on a tiny randomly-initialized BERT (built from a config,
nothing downloaded): training is bit-identical with it, and its records match known answers."""

import warnings

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip(
    "transformers", reason="needs transformers: pip install normtheory[transformers]"
)
pytest.importorskip(
    "accelerate", reason="the Trainer needs accelerate: pip install normtheory[transformers]"
)

from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainingArguments,
)

from normtheory.hooks import (  # noqa: E402
    GradNorm,
    HessianSpectrum,
    LossAccuracy,
    OrthogonalWeightNorm,
    Smoothness,
    WeightNorm,
)
from normtheory.integrations.transformers import NormtheoryCallback  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning"),
]

LR, WD, STEPS = 0.05, 0.01, 6


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n=64, length=10):
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, 30, (n, length), generator=gen)
        self.labels = (self.ids == 7).any(dim=1).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def _model(dropout=0.1):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=16, num_labels=2,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )  # fmt: skip
    return BertForSequenceClassification(config)


def _train(callbacks, tmp_path, *, optim="sgd", evaluate=False, accumulate=1, dropout=0.1, wd=WD):
    model = _model(dropout)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=STEPS, per_device_train_batch_size=16,
        optim=optim, learning_rate=LR, weight_decay=wd, lr_scheduler_type="constant",
        use_cpu=True, report_to=[], save_strategy="no", logging_strategy="no",
        disable_tqdm=True, seed=0, gradient_accumulation_steps=accumulate,
        eval_strategy="steps" if evaluate else "no", eval_steps=3,
        per_device_eval_batch_size=16,
    )  # fmt: skip
    data = Tokens()
    trainer = Trainer(
        model=model, args=args, train_dataset=data, eval_dataset=data if evaluate else None,
        callbacks=callbacks,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    return model, trainer


def test_training_is_bit_identical_with_the_callback(tmp_path):
    data = Tokens()
    hooks = [
        LossAccuracy(every=2),
        GradNorm(every=2),
        WeightNorm(every=3),
        OrthogonalWeightNorm(every=3),
        HessianSpectrum(k=1, every=3),  # train mode: the dropout masks of BERT
        Smoothness(every=4, n_points=3, probe=(data.ids[:8], data.labels[:8])),
    ]
    callback = NormtheoryCallback(hooks)
    model_a, trainer_a = _train([callback], tmp_path, optim="adamw_torch", evaluate=True)
    model_b, trainer_b = _train([], tmp_path, optim="adamw_torch", evaluate=True)
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_b)
    opt_a, opt_b = (
        trainer_a.optimizer.state_dict()["state"],
        trainer_b.optimizer.state_dict()["state"],
    )
    assert all(torch.equal(opt_a[i]["exp_avg_sq"], opt_b[i]["exp_avg_sq"]) for i in opt_b)
    frame = callback.frame()
    assert {"hessian.eig", "smoothness.beta", "orth.complement_dim", "grad_norm.l2"} <= set(
        frame.metric
    )
    assert frame[frame.metric == "outcome.train_acc"].step.tolist() == [0, 2, 4]
    assert frame[frame.metric == "outcome.eval_loss"].step.tolist() == [3, 6]
    assert frame[frame.metric == "orth.updates"].value.tolist() == [1, 4, STEPS]  # every batch


def test_the_hessian_is_that_of_the_logits_loss(tmp_path):
    """Known answer: the top eigenvalues the callback records at the end, over the classifier's
    66 weights on a fixed probe, equal those of the dense autograd Hessian of
    cross_entropy(model(input_ids=x).logits, y) at the trained weights."""
    data = Tokens()
    x, y = data.ids[:12], data.labels[:12]
    hook = HessianSpectrum(
        k=2, probe=(x, y), mode="eval", params=["classifier"], at_end=True, tol=1e-6
    )
    callback = NormtheoryCallback([hook])
    model, _ = _train([callback], tmp_path)
    model.eval()
    names = ["classifier.weight", "classifier.bias"]
    params = dict(model.named_parameters())
    flat = torch.cat([params[n].detach().reshape(-1) for n in names]).double()
    shapes = [params[n].shape for n in names]
    model.double()

    def loss(w):
        parts = torch.split(w, [s.numel() for s in shapes])
        swapped = {n: p.reshape(s) for n, p, s in zip(names, parts, shapes)}
        logits = torch.func.functional_call(model, swapped, kwargs={"input_ids": x}).logits
        return F.cross_entropy(logits, y)

    dense = torch.autograd.functional.hessian(loss, flat)
    top = torch.linalg.eigvalsh(dense).flip(0)[:2].tolist()
    frame = callback.frame()
    got = frame[frame.metric == "hessian.eig"].sort_values("key").value.tolist()
    assert frame[frame.metric == "hessian.eig"].step.unique().tolist() == [STEPS]
    assert got == pytest.approx(top, rel=1e-4)


@pytest.mark.parametrize("wd", [0.0, WD])
def test_orthogonal_ratio_and_drift_of_the_pooler(tmp_path, wd):
    """Known answer (SPAN-ORTH): after the first SGD step the pooler's dense layer has seen 16
    vectors in R^32; outside their span the gradient is zero, so ‖W_1 P⊥‖ / ‖W_0 P⊥‖ = 1 − ηλ
    and ‖(W_1 − W_0) P⊥‖ / ‖W_0 P⊥‖ = ηλ (1 and 0 without weight decay)."""
    callback = NormtheoryCallback([OrthogonalWeightNorm(every=1)])
    _train([callback], tmp_path, dropout=0.0, wd=wd)
    frame = callback.frame()
    pooler = frame[(frame.step == 0) & (frame.key == "bert.pooler.dense")]
    row = dict(zip(pooler.metric, pooler.value))
    assert row["orth.complement_dim"] == 16
    assert row["orth.ratio"] == pytest.approx(1 - LR * wd, abs=1e-6)
    assert row["orth.drift"] == pytest.approx(LR * wd, abs=1e-6)


def test_gradient_accumulation_is_refused(tmp_path):
    with pytest.raises(ValueError, match="gradient accumulation"):
        _train([NormtheoryCallback([GradNorm()])], tmp_path, accumulate=2)
