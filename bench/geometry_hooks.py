"""Overhead of the weight-geometry hooks: training with them against training without.

Run: ``python bench/geometry_hooks.py [--device cpu|cuda|auto] [--steps 300] [--repeats 5]
[--threads 1] [--only issue18] [--json PATH]``. Issue 4 asks that `OrthogonalWeightNorm` and
`ScaleInvariance` be cheap and that the note say how cheap: this prints, per model and hook
configuration, the median over repeats of the paired ratio (wall time with hooks) / (wall time
without) of the step loop of a `run_train_cell` (the hooks' start and end records, the data
and the final evaluation left out), the two arms alternating which runs first. On the CPU the
targets are judged on the loop's CPU time (`TrainResult.loop_cpu_s`, `time.process_time`),
which on shared cores leaves out the waits for other processes; the wall-time ratio is printed
beside it. On CUDA, wall time.

Issue 18's targets (a PASS/FAIL line each): `OrthogonalWeightNorm` on every layer of a small BN
convnet on the digits (width 16, depth 3, one channel, SGD, batch 64, 200 steps — `--steps`
does not change it) ≤ ×1.3 recorded every step and ≤ ×1.1 recorded every 20 steps.

Configurations (the study settings): `OrthogonalWeightNorm` on the first layer recorded every
20 steps, on every linear/conv layer every 20 steps, and `ScaleInvariance` every 5 steps; on a
BN MLP (192 → 64 → 64 → 10) and a BN convnet (width 16, depth 3) on the digits repeated on 3
channels, SGD, batch 32. `OrthogonalWeightNorm` projects each layer's inputs onto its span's
basis every step until the span is the whole fan-in, then skips the layer (`InputSpan`);
`ScaleInvariance` copies the watched weights and gradients on its schedule.
"""

import argparse
import dataclasses
import functools
import json

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
ISSUE18 = dataclasses.replace(
    BASE, data_channels=1, arch="convnet", width=16, depth=3, batch_size=64, steps=200
)
TARGETS = {  # issue 18: label -> (hooks, largest ratio)
    "OrthogonalWeightNorm(all layers, every step)": (lambda: [OrthogonalWeightNorm()], 1.3),
    "OrthogonalWeightNorm(all layers, every 20)": (lambda: [OrthogonalWeightNorm(every=20)], 1.1),
}
HOOKS = {
    "OrthogonalWeightNorm(first layer, every 20)": lambda arch: [
        OrthogonalWeightNorm(layers=[FIRST[arch]], every=20)
    ],
    "OrthogonalWeightNorm(all layers, every 20)": lambda arch: [OrthogonalWeightNorm(every=20)],
    "ScaleInvariance(every 5)": lambda arch: [ScaleInvariance(every=5)],
}


def timed(cell: TrainCell, hooks, device: str) -> tuple[float, float]:
    """Wall and CPU seconds (this process's, all threads) of one cell's step loop."""
    result = run_train_cell(cell, 0, device=device, hooks=hooks)
    return result.steps_done / result.steps_per_s, result.loop_cpu_s


def paired(cell: TrainCell, make, repeats: int, device: str) -> dict:
    """Median times and paired ratios with / without the hooks `make()` builds, in wall and
    in CPU time. `ratio` is the one the targets judge: CPU time on the CPU (on shared cores
    the wall time also counts the waits for other processes, which moved wall ratios by ±0.15
    between runs), wall time on CUDA (the CPU then mostly waits for the device)."""
    wall, cpu = {False: [], True: []}, {False: [], True: []}
    for rep in range(repeats):
        order = [False, True] if rep % 2 == 0 else [True, False]
        for h in order:
            w, c = timed(cell, make() if h else [], device)
            wall[h].append(w)
            cpu[h].append(c)
    wall_ratio = np.median(np.array(wall[True]) / np.array(wall[False]))
    cpu_ratio = np.median(np.array(cpu[True]) / np.array(cpu[False]))
    judged = cpu if device == "cpu" else wall
    return {
        "without (s)": np.median(judged[False]),
        "with (s)": np.median(judged[True]),
        "ratio": cpu_ratio if device == "cpu" else wall_ratio,
        "wall ratio": wall_ratio,
        "CPU ratio": cpu_ratio,
        "per step (ms)": 1e3 * (np.median(judged[True]) - np.median(judged[False])) / cell.steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=["issue18"], default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for arch, cell in ({} if args.only else MODELS).items():
        cell = dataclasses.replace(cell, steps=args.steps)
        timed(cell, [], args.device)  # warm-up: data cache, kernels
        for label, make in HOOKS.items():
            rows.append(
                {
                    "model": arch,
                    "hooks": label,
                    **paired(cell, functools.partial(make, arch), args.repeats, args.device),
                }
            )
            print(f"{arch:8s} {label:45s} ratio ×{rows[-1]['ratio']:.2f}", flush=True)
    timed(ISSUE18, [], args.device)
    verdicts = []
    for label, (make, target) in TARGETS.items():
        rows.append(
            {
                "model": "convnet-b64",
                "hooks": label,
                **paired(ISSUE18, make, args.repeats, args.device),
            }
        )
        ratio = rows[-1]["ratio"]
        verdicts.append(
            f"{'PASS' if ratio <= target else 'FAIL'} {label}: ×{ratio:.2f} (target ≤ ×{target})"
        )
        print(f"convnet-b64 {label:45s} ratio ×{ratio:.2f}", flush=True)
    table = pd.DataFrame(rows)
    print()
    print(
        f"device {args.device}, {args.steps} steps (convnet-b64: {ISSUE18.steps}), "
        f"{args.repeats} repeats, {args.threads} thread(s); times and `ratio`: "
        f"{'CPU time of this process' if args.device == 'cpu' else 'wall time'}"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\n".join(verdicts))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
