"""A Hugging Face `Trainer` run measured by normtheory: the Hessian's top eigenvalue and ‖W P⊥‖.

    python examples/hf_trainer_hooks.py --steps 40 --every 10 --plot hf.png

A 2-layer BERT (hidden size 32) built from a config, randomly initialized (nothing is
downloaded), learns a synthetic task: is token 7 in the sequence? The Trainer is ordinary;
the one addition is the callback. The hooks see ``batch["input_ids"]`` and ``batch["labels"]``
and call ``model(input_ids=x).logits`` (`normtheory.integrations.batches.KeywordBatch`). The
pooler's dense layer sees one vector per sequence: after the first batch, 16 vectors in its
32-dimensional input space, so its weight has a part outside their span, shrunk by (1 − ηλ)
by the SGD step's weight decay and untouched by the gradient (`orth.ratio` at step 0); from
the second batch on their span is the whole space (`orth.complement_dim` 0).
"""

import argparse

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from normtheory.hooks import HessianSpectrum, OrthogonalWeightNorm
from normtheory.integrations.transformers import NormtheoryCallback
from normtheory.plots import plot_records

LR, WD = 0.05, 0.01


class Tokens(torch.utils.data.Dataset):
    """Random sequences of 12 tokens; label 1 when token 7 occurs."""

    def __init__(self, n: int = 256, length: int = 12, vocab: int = 30):
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, vocab, (n, length), generator=gen)
        self.labels = (self.ids == 7).any(dim=1).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=10, help="measure every this many steps")
    parser.add_argument("--out", default="hf_trainer_out", help="the Trainer's output_dir")
    parser.add_argument("--plot", help="save a figure of the records to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a tiny model: more threads only wait for each other

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=16, num_labels=2,
    )  # fmt: skip
    model = BertForSequenceClassification(config)
    hooks = [HessianSpectrum(k=1, every=args.every), OrthogonalWeightNorm(every=args.every)]
    callback = NormtheoryCallback(hooks)
    training = TrainingArguments(
        output_dir=args.out, max_steps=args.steps, per_device_train_batch_size=16,
        optim="sgd", learning_rate=LR, weight_decay=WD, lr_scheduler_type="constant",
        use_cpu=True, report_to=[], save_strategy="no", logging_strategy="no",
        disable_tqdm=True, seed=0,
    )  # fmt: skip
    Trainer(model=model, args=training, train_dataset=Tokens(), callbacks=[callback]).train()

    records = callback.frame(pivot=True)  # one row per step, one column per metric/key
    pooler = ["orth.complement_dim/bert.pooler.dense", "orth.ratio/bert.pooler.dense"]
    print(records[["hessian.eig/1", *pooler, "orth.updates"]].to_string())
    print(f"1 - lr * wd = {1 - LR * WD:.6f}")
    if args.plot:
        plot_records(records, metrics=["hessian.eig", *pooler]).savefig(args.plot)


if __name__ == "__main__":
    main()
