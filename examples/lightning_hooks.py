"""A PyTorch Lightning run measured by normtheory: the Hessian's top eigenvalue and ‖W P⊥‖.

    python examples/lightning_hooks.py --steps 60 --every 20 --plot lightning.png

The LightningModule is ordinary; the one addition is the callback in the Trainer. A BN MLP
learns the 8×8 digits with SGD and weight decay; some pixels are zero in every image, so the
first layer's weight has a part outside the span of its inputs, which the gradient never
touches and weight decay shrinks by (1 − ηλ) per step (`orth.ratio`).
"""

import argparse

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from normtheory.data import load_dataset
from normtheory.hooks import HessianSpectrum, OrthogonalWeightNorm
from normtheory.integrations.lightning import NormtheoryCallback
from normtheory.plots import plot_records


class Digits(pl.LightningModule):
    def __init__(self, lr: float, weight_decay: float):
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(),
            nn.Linear(32, 10),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=20, help="measure every this many steps")
    parser.add_argument("--plot", help="save a figure of the records to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a tiny model: more threads only wait for each other

    pl.seed_everything(0, verbose=False)
    train, _ = load_dataset("digits")
    loader = DataLoader(train, batch_size=64, shuffle=True)
    hooks = [HessianSpectrum(k=1, every=args.every), OrthogonalWeightNorm(every=args.every)]
    callback = NormtheoryCallback(hooks)
    trainer = pl.Trainer(
        max_steps=args.steps, accelerator="cpu", callbacks=[callback], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Digits(lr=0.1, weight_decay=5e-3), loader)

    records = callback.frame(pivot=True)  # one row per step, one column per metric/key
    print(records[["hessian.eig/1", "orth.ratio/net.1", "orth.updates"]].to_string())
    print(f"(1 - lr * wd)^{args.steps} = {(1 - 0.1 * 5e-3) ** args.steps:.6f}")
    if args.plot:
        plot_records(records, metrics=["hessian.eig", "orth.ratio"]).savefig(args.plot)


if __name__ == "__main__":
    main()
