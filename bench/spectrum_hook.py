"""Overhead of `HessianSpectrum(k=1)` every 50 steps, with and without warm-started Lanczos.

Run: ``python bench/spectrum_hook.py [--device cpu|cuda] [--steps 500] [--repeats 3]
[--batch 128] [--threads 1] [--json PATH]``. Issue 18's target: training with
``HessianSpectrum(k=1, every=50)`` takes <= 1.15x the time per step of training without it.

A BN convnet (width 16, depth 3) trains on digits (8x8) with SGD (lr 0.1, batch ``--batch``);
the hook measures the top Hessian eigenvalue (tol 1e-3, the hook's default) on the first
training batch every 50 steps. Three arms run in one process, their order rotating between
repeats: no hook, the hook with ``warm_start=True`` (Lanczos starts from the last top
eigenvector), and with ``warm_start=False`` (a random start every call). Time per step is
1 / ``steps_per_s`` of the training loop (hooks included, data loading and the final
evaluation excluded). Reported: the median over repeats of the paired ratio (time per step
with the hook) / (without), and the hook's HVPs per call (the first call, always cold, apart).
"""

import argparse
import dataclasses
import json

import numpy as np
import pandas as pd
import torch

from normtheory.experiment import TrainCell, run_train_cell
from normtheory.hooks import HessianSpectrum

ARMS = {
    "none": lambda: [],
    "warm": lambda: [HessianSpectrum(k=1, every=50, warm_start=True)],
    "cold": lambda: [HessianSpectrum(k=1, every=50, warm_start=False)],
}


def main(argv: list[str] | None = None) -> None:
    """Runs the arms; prints the ratios, HVPs per call and the PASS/FAIL line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cell = TrainCell(
        arch="convnet", norm="batch", width=16, depth=3, optimizer="sgd", lr=0.1, momentum=0.0,
        batch_size=args.batch, steps=args.steps,
    )  # fmt: skip
    run_train_cell(dataclasses.replace(cell, steps=20), 0, device=args.device)  # warm-up
    rows = []
    names = list(ARMS)
    for rep in range(args.repeats):
        order = names[rep % 3 :] + names[: rep % 3]
        for arm in order:
            res = run_train_cell(cell, 0, device=args.device, hooks=ARMS[arm]())
            hvp = res.records.query("metric == 'hessian.n_hvp'").sort_values("step").value
            rows.append(dict(repeat=rep, arm=arm, per_step=1 / res.steps_per_s,
                             hvp_first=hvp.iloc[0] if len(hvp) else np.nan,
                             hvp_later=hvp.iloc[1:].mean() if len(hvp) > 1 else np.nan))  # fmt: skip
        print(", ".join(f"{r['arm']} {1e3 * r['per_step']:.2f} ms" for r in rows[-3:]), flush=True)
    df = pd.DataFrame(rows)
    wide = df.pivot(index="repeat", columns="arm", values="per_step")
    table = df.groupby("arm", sort=False).agg(
        ms_per_step=("per_step", lambda t: 1e3 * np.median(t)),
        hvp_first_call=("hvp_first", "median"),
        hvp_per_later_call=("hvp_later", "median"),
    )
    table["ratio"] = [np.median(wide[a] / wide["none"]) for a in table.index]
    print(f"\n{args.device}, {args.steps} steps, batch {args.batch}, {args.repeats} repeats, "
          f"{torch.get_num_threads()} thread(s); ratio = median of paired ratios to 'none'")  # fmt: skip
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    for arm in ("warm", "cold"):
        r = table.loc[arm, "ratio"]
        print(f"{'PASS' if r <= 1.15 else 'FAIL'}  HessianSpectrum(k=1, every=50, {arm}) <= x1.15"
              f"  x{r:.3f}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(table.reset_index().to_dict("records"), fh, indent=1, default=float)


if __name__ == "__main__":
    main()
