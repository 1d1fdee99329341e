"""A plain PyTorch training loop measured by normtheory's hooks, logged to TensorBoard.

    python examples/train_with_hooks.py --steps 200 --log-dir runs/tb && tensorboard --logdir runs/tb

The loop is ordinary PyTorch; the only additions are the `Monitor` calls. Its records go to
TensorBoard (scalars ``<hook>.<metric>[/<key>]``) and to memory for the summary printed at the end.
"""

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from normtheory.data import load_dataset
from normtheory.hooks import (
    GradNorm,
    LossAccuracy,
    MemorySink,
    Monitor,
    ScaleInvariance,
    TensorBoardSink,
    WeightNorm,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=10, help="measure every this many steps")
    parser.add_argument("--log-dir", default="runs/tensorboard")
    args = parser.parse_args()

    torch.manual_seed(0)
    train, test = load_dataset("digits")  # 8×8 handwritten digits, offline
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 64, bias=False),
        nn.BatchNorm1d(64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    hooks = [
        LossAccuracy(data=test, every=args.every),
        GradNorm(every=args.every),
        WeightNorm(every=args.every),
        ScaleInvariance(every=args.every),
    ]
    memory = MemorySink()
    monitor = Monitor(model, hooks, sinks=[memory, TensorBoardSink(args.log_dir)])
    monitor.start()
    for step in range(args.steps):
        idx = torch.randint(len(train), (32,))
        x, y = train.inputs[idx], train.targets[idx]
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        monitor.after_backward(step, inputs=x, loss=loss.detach(), optimizer=opt)
        opt.step()
        monitor.after_step(
            step, inputs=x, targets=y, outputs=out, loss=loss.detach(), optimizer=opt
        )
    monitor.end(args.steps)
    monitor.close()
    last = memory.frame().groupby(["metric", "key"]).value.last()
    print(last.to_string())
    print(f"TensorBoard event files in {args.log_dir}")


if __name__ == "__main__":
    main()
