"""Overhead of the weight-geometry hooks: training with them against training without.

Run: ``python bench/geometry_hooks.py [--device cpu|cuda|auto] [--steps 300] [--repeats 5]
[--threads 1] [--json PATH]``. Issue 4 asks that `OrthogonalWeightNorm` and `ScaleInvariance`
be cheap and that the note say how cheap: this prints, per model and hook configuration, the
median over repeats of the paired ratio (wall time with hooks) / (wall time without), the two
arms alternating which runs first. No target to pass: the ratio is the number to report.

Configurations (the study settings): `OrthogonalWeightNorm` on the first layer recorded every
20 steps, on every linear/conv layer every 20 steps, and `ScaleInvariance` every 5 steps; on a
BN MLP (192 → 64 → 64 → 10) and a BN convnet (width 16, depth 3) on the digits repeated on 3
channels, SGD, batch 32. `OrthogonalWeightNorm` updates each layer's float64 Gram every step
(a GEMM of the layer's input patches) and diagonalizes it at each record; `ScaleInvariance`
copies the watched weights and gradients on its schedule.
"""

import argparse
import dataclasses
import json
import time

import numpy as np
import pandas as pd
import torch

from normtheory.experiment import TrainCell, run_train_cell
from normtheory.hooks import OrthogonalWeightNorm, ScaleInvariance

BASE = TrainCell(
    dataset="digits",
    data_channels=3,
    norm="batch",
    optimizer="sgd",
    lr=0.1,
    momentum=0.0,
    batch_size=32,
)
MODELS = {
    "mlp": dataclasses.replace(BASE, arch="mlp", width=64, depth=2),
    "convnet": dataclasses.replace(BASE, arch="convnet", width=16, depth=3),
}
FIRST = {"mlp": "fc1", "convnet": "conv1"}
HOOKS = {
    "OrthogonalWeightNorm(first layer, every 20)": lambda arch: [
        OrthogonalWeightNorm(layers=[FIRST[arch]], every=20)
    ],
    "OrthogonalWeightNorm(all layers, every 20)": lambda arch: [OrthogonalWeightNorm(every=20)],
    "ScaleInvariance(every 5)": lambda arch: [ScaleInvariance(every=5)],
}


def timed(cell: TrainCell, hooks, device: str) -> float:
    start = time.perf_counter()
    run_train_cell(cell, 0, device=device, hooks=hooks)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for arch, cell in MODELS.items():
        cell = dataclasses.replace(cell, steps=args.steps)
        timed(cell, [], args.device)  # warm-up: data cache, kernels
        for label, make in HOOKS.items():
            ratios, base_times, hook_times = [], [], []
            for rep in range(args.repeats):
                order = [False, True] if rep % 2 == 0 else [True, False]
                times = {h: timed(cell, make(arch) if h else [], args.device) for h in order}
                ratios.append(times[True] / times[False])
                base_times.append(times[False])
                hook_times.append(times[True])
            rows.append(
                {
                    "model": arch,
                    "hooks": label,
                    "without (s)": np.median(base_times),
                    "with (s)": np.median(hook_times),
                    "ratio": np.median(ratios),
                    "per step (ms)": 1e3
                    * (np.median(hook_times) - np.median(base_times))
                    / args.steps,
                }
            )
            print(f"{arch:8s} {label:45s} ratio ×{rows[-1]['ratio']:.2f}", flush=True)
    table = pd.DataFrame(rows)
    print()
    print(
        f"device {args.device}, {args.steps} steps, {args.repeats} repeats, {args.threads} thread(s)"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
