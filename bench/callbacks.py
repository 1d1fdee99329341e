"""Overhead of the framework callbacks: time per step with `NormtheoryCallback` against without.

Run: ``python bench/callbacks.py [--repeats 5] [--steps 200] [--threads 1] [--only lightning|hf]
[--json PATH]`` (needs ``pip install normtheory[lightning,transformers]``). Each framework
trains a small model; every arm builds it from the same seed and trains on the same batches,
the arms of one repeat run back to back in a rotated order, and the table gives the median
over repeats of each arm's ratio to the arm without the callback in its repeat.

- Lightning: a BN convnet (width 16, depth 3) on the digits, SGD lr 0.1, batch 64.
- Hugging Face `Trainer`: a 2-layer BERT (hidden 32, 2 heads) on 12-token sequences, SGD
  lr 0.05, batch 16.

Arms: no callback; the callback with no hook (its plumbing: forward hooks, events, batch
split); the basic monitor every step (`LossAccuracy` + `GradNorm` + `WeightNorm`); the
examples' hooks (`HessianSpectrum(k=1)` every 50 + `OrthogonalWeightNorm` every 20). Time per
step is the loop's, from the start of the second step to the end of training (a timing
callback in every arm, the plain one included), so the frameworks' setup is left out.
"""

import argparse
import json
import statistics
import time
import warnings

import torch

from normtheory.hooks import (
    GradNorm,
    HessianSpectrum,
    LossAccuracy,
    OrthogonalWeightNorm,
    WeightNorm,
)

ARMS = {  # label -> make hooks (None: no callback)
    "no callback": None,
    "callback, no hooks": lambda: [],
    "LossAccuracy+GradNorm+WeightNorm every step": lambda: [
        LossAccuracy(),
        GradNorm(),
        WeightNorm(),
    ],
    "HessianSpectrum(k=1) every 50 + OrthogonalWeightNorm every 20": lambda: [
        HessianSpectrum(k=1, every=50),
        OrthogonalWeightNorm(every=20),
    ],
}


def lightning_step_time(make_hooks, steps: int) -> float:
    import lightning.pytorch as pl
    import torch.nn.functional as F

    from normtheory.data import load_dataset
    from normtheory.integrations.lightning import NormtheoryCallback
    from normtheory.models import build_model

    class Timer(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 1 and not hasattr(self, "start"):
                self.start = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            self.seconds = (time.perf_counter() - self.start) / (trainer.global_step - 1)

    class Module(pl.LightningModule):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    train, _ = load_dataset("digits")
    pl.seed_everything(0, verbose=False)
    net = build_model(
        "convnet", norm="batch", in_shape=train.in_shape, num_classes=10, width=16, depth=3
    )
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True, drop_last=True)
    timer = Timer()
    callbacks = [timer] + ([] if make_hooks is None else [NormtheoryCallback(make_hooks())])
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", callbacks=callbacks, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Module(net), loader)
    return timer.seconds


def hf_step_time(make_hooks, steps: int) -> float:
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from normtheory.integrations.transformers import NormtheoryCallback

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 1 and not hasattr(self, "start"):
                self.start = time.perf_counter()

        def on_train_end(self, args, state, control, **kw):
            self.seconds = (time.perf_counter() - self.start) / (state.global_step - 1)

    class Tokens(torch.utils.data.Dataset):
        def __init__(self):
            gen = torch.Generator().manual_seed(0)
            self.ids = torch.randint(1, 30, (512, 12), generator=gen)
            self.labels = (self.ids == 7).any(dim=1).long()

        def __len__(self):
            return len(self.ids)

        def __getitem__(self, i):
            return {"input_ids": self.ids[i], "labels": self.labels[i]}

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=16, num_labels=2,
    )  # fmt: skip
    model = BertForSequenceClassification(config)
    args = TrainingArguments(
        output_dir="/tmp/normtheory-bench-callbacks", max_steps=steps,
        per_device_train_batch_size=16, optim="sgd", learning_rate=0.05,
        lr_scheduler_type="constant", use_cpu=True, report_to=[], save_strategy="no",
        logging_strategy="no", disable_tqdm=True, seed=0,
    )  # fmt: skip
    timer = Timer()
    callbacks = [timer] + ([] if make_hooks is None else [NormtheoryCallback(make_hooks())])
    Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=callbacks).train()
    return timer.seconds


FRAMEWORKS = {"lightning": lightning_step_time, "hf": hf_step_time}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=sorted(FRAMEWORKS), default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    results = {}
    for name, step_time in FRAMEWORKS.items():
        if args.only and name != args.only:
            continue
        labels = list(ARMS)
        times = {label: [] for label in labels}
        for repeat in range(args.repeats):
            order = labels[repeat % len(labels) :] + labels[: repeat % len(labels)]
            for label in order:
                times[label].append(step_time(ARMS[label], args.steps))
        base = times["no callback"]
        results[name] = {
            label: {
                "ms_per_step": 1000 * statistics.median(times[label]),
                "ratio": statistics.median(t / b for t, b in zip(times[label], base)),
            }
            for label in labels
        }
        print(f"\n{name}: {args.steps} steps, {args.repeats} repeats, {args.threads} thread(s)")
        print("| arm | ms / step | ratio to no callback |\n|---|---|---|")
        for label, row in results[name].items():
            print(f"| {label} | {row['ms_per_step']:.2f} | {row['ratio']:.3f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
