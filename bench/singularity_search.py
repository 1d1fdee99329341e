"""Search for a setting where plain GN / LN nets lose channels (WS-SINGULAR's precondition).

Run: ``python bench/singularity_search.py [--settings NAME ...] [--seeds 2] [--workers 2]
[--csv out.csv]``. The check ``dead_channels`` of WS-SINGULAR needs some plain GN or LN net to
end with a dead channel (a channel the ReLU after the norm zeroes for every probe example).
This trains plain GN and LN nets only — never the WS arms, so the search does not look at the
claim's comparison — over deeper nets (convnet, ResNet with and without shortcuts), higher
learning rates (SGD up to divergence, Adam), longer training, width, weight decay and the
offline datasets, and prints one row per setting and norm (means over seeds):

- ``channels``: channels of the norm layers whose output feeds a ReLU directly (counted below);
- ``dead_start``, ``dead``: dead channels at step 0 and at the end; ``new``: dead at the end
  but not at step 0 (lost over training, as opposed to dead from initialization);
- ``dead_max``: the largest dead count at any of the 9 probes over training;
- ``near``: channels off for ≥ 95 % of the probe examples at the end (the graded version);
- ``off``: the mean over channels and layers of the fraction of examples a channel is off;
- ``acc``: final test accuracy; ``div``: runs that diverged.

In a ResNet with shortcuts the second norm of a block and the shortcut's norm feed the addition,
not a ReLU, so their channels are left out of the counts (a channel ≤ 0 there is not switched
off). The probe is the first 256 training examples, as in the study. Each run uses one torch
thread; ``--workers`` runs that many at once: all settings × 2 norms × 3 seeds took 3.6 min on
16 cores (about an hour of one core).
"""

import argparse
import csv
import time
from dataclasses import replace
from multiprocessing import Pool

import pandas as pd
import torch

from normtheory.experiment import TrainCell, probe_batch, run_train_cell
from normtheory.hooks.base import Hook
from normtheory.hooks.schedule import evenly
from normtheory.measure.singularity import channel_health
from normtheory.norms import norm_layers
from normtheory.state import probe_forward

BASE = TrainCell(dataset="digits", arch="convnet", width=16, depth=6, groups=4, optimizer="sgd",
                 lr=0.05, momentum=0.9, batch_size=32, steps=400, eval_every=0)  # fmt: skip
RES = dict(arch="resnet", width=8, depth=20)  # ResNet-20 at width 8 on digits
M1D = dict(dataset="mnist1d")
MLP = dict(arch="mlp", width=64, groups=16, depth=6)

# name: changes to BASE. Groups: the study's protocol and its length; SGD LR up to divergence;
# Adam; depth; ResNets; width; weight decay; batch size; mnist1d; an MLP (dying ReLU units).
SETTINGS: dict[str, dict] = {
    "study-quick": {},
    "study-4000": dict(steps=4000),
    **{f"sgd-lr{lr:g}": dict(lr=lr, steps=3000) for lr in (0.2, 0.5, 1.0, 2.0)},
    **{
        f"adam-{lr:g}": dict(optimizer="adam", lr=lr, steps=3000) for lr in (1e-3, 3e-3, 1e-2, 3e-2)
    },
    "depth12": dict(depth=12, steps=3000),
    "depth12-lr0.5": dict(depth=12, lr=0.5, steps=3000),
    "depth20": dict(depth=20, steps=3000),
    "depth20-lr0.2": dict(depth=20, lr=0.2, steps=3000),
    "depth20-adam3e-3": dict(depth=20, optimizer="adam", lr=3e-3, steps=3000),
    "res20": dict(RES, steps=2000),
    "res20-lr0.5": dict(RES, lr=0.5, steps=2000),
    "res20-noskip": dict(RES, residual=False, steps=2000),
    "res20-noskip-lr0.5": dict(RES, residual=False, lr=0.5, steps=2000),
    "res20-adam3e-3": dict(RES, optimizer="adam", lr=3e-3, steps=2000),
    "width4": dict(width=4, groups=2, steps=3000),
    "width8": dict(width=8, groups=2, steps=3000),
    "width64": dict(width=64, groups=16, steps=3000),
    **{f"wd{wd:g}": dict(weight_decay=wd, steps=3000) for wd in (5e-4, 5e-3, 5e-2)},
    "batch8": dict(batch_size=8, steps=3000),
    "mnist1d": dict(M1D, steps=3000),
    "mnist1d-lr0.5": dict(M1D, lr=0.5, steps=3000),
    "mnist1d-adam3e-3": dict(M1D, optimizer="adam", lr=3e-3, steps=3000),
    "mnist1d-depth12": dict(M1D, depth=12, steps=3000),
    "mlp": dict(MLP, steps=2000),
    "mlp-adam3e-3": dict(MLP, optimizer="adam", lr=3e-3, steps=2000),
}
NORMS = ("group", "layer")  # plain nets only: the WS arms are the claim's comparison
PROBES = 9


def _feeds_relu(cell: TrainCell, name: str) -> bool:
    """Whether norm layer `name`'s output goes straight into a ReLU (norm_act placement)."""
    pre_add = name.endswith("norm2") or name.endswith("shortcut.norm")
    return not (cell.arch == "resnet" and cell.residual and pre_add)


class _Census(Hook):
    """Per channel of every norm layer (key ``layer/c``): the fraction of probe examples whose
    map the ReLU after the norm zeroes (`channel_health`)."""

    events = ("start", "after_step", "end")
    default_name = "census"

    def __init__(self, *, probe, **kw):
        super().__init__(**kw)
        self.probe = probe

    def on(self, event, ctx):
        outputs = probe_forward(ctx.model, self.probe, norm_layers(ctx.model))
        for name, y in outputs.items():
            for c, off in enumerate(channel_health(y).off_fraction.tolist()):
                yield "off", f"{name}/{c}", off


def run_one(job: tuple[str, str, int]) -> dict:
    """Trains one (setting, norm, seed) and returns its row."""
    setting, norm, seed = job
    torch.set_num_threads(1)
    cell = replace(BASE, norm=norm, **SETTINGS[setting])
    probe = probe_batch(cell, 256)[0]
    started = time.perf_counter()
    hook = _Census(probe=probe, every=evenly(PROBES))
    result = run_train_cell(cell, seed, device="cpu", hooks=[hook])
    rec = result.records
    rec = rec[rec["key"].map(lambda k: _feeds_relu(cell, k.split("/")[0]))]
    off = rec.pivot_table(index="step", columns="key", values="value")  # (probes, channels)
    if off.empty:  # nothing recorded (e.g. diverged before the first probe)
        off = pd.DataFrame([[float("nan")]])
    dead = off == 1.0
    first, last = dead.iloc[0], dead.iloc[-1]
    return {
        "setting": setting,
        "norm": norm,
        "seed": seed,
        "status": result.status,
        "steps": result.steps_done,
        "params": int(result.final.get("n_params", 0)),
        "channels": off.shape[1],
        "dead_start": int(first.sum()),
        "dead": int(last.sum()),
        "new": int((last & ~first).sum()),
        "dead_max": int(dead.sum(axis=1).max()),
        "near": int((off.iloc[-1] >= 0.95).sum()),
        "off": float(off.iloc[-1].mean()),
        "acc": float(result.final.get("test_acc", float("nan"))),
        "seconds": round(time.perf_counter() - started, 1),
    }


COLUMNS = ("dead_start", "dead", "new", "dead_max", "near", "off", "acc")


def _table(rows: list[dict]) -> str:
    lines = [
        "| setting | norm | params | channels | " + " | ".join(COLUMNS) + " | div | s/run |",
        "|---|---|---|---|" + "---|" * len(COLUMNS) + "---|---|",
    ]
    keys = sorted(dict.fromkeys((r["setting"], r["norm"]) for r in rows),
                  key=lambda k: (list(SETTINGS).index(k[0]), k[1]))  # fmt: skip
    for setting, norm in keys:
        group = [r for r in rows if (r["setting"], r["norm"]) == (setting, norm)]
        ok = [r for r in group if r["status"] == "completed"] or group
        means = [sum(r[k] for r in ok) / len(ok) for k in (*COLUMNS, "seconds")]
        cells = [f"{v:.3f}" if k in ("off", "acc") else f"{v:.1f}" for k, v in zip(COLUMNS, means)]
        div = sum(r["status"] != "completed" for r in group)
        lines.append(
            f"| {setting} | {norm} | {group[0]['params']} | {group[0]['channels']} | "
            + " | ".join(cells)
            + f" | {div}/{len(group)} | {means[-1]:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--norms", nargs="*", default=list(NORMS), choices=list(NORMS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--csv", default="")
    args = parser.parse_args()
    jobs = [(s, n, seed) for s in args.settings for n in args.norms for seed in range(args.seeds)]
    jobs.sort(key=lambda j: -_cost(SETTINGS[j[0]]))  # longest first: no straggler at the end
    rows = []
    with Pool(args.workers) as pool, open(args.csv or "/dev/null", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["setting", "norm", "seed", "status", "steps",
                                               "params", "channels", *COLUMNS, "seconds"])  # fmt: skip
        writer.writeheader()
        for row in pool.imap_unordered(run_one, jobs):
            rows.append(row)
            writer.writerow(row)
            f.flush()
    print(_table(rows))


def _cost(change: dict) -> float:
    """Rough relative cost of a setting: steps × depth × width factor."""
    cell = replace(BASE, **change)
    return cell.steps * cell.depth * max(cell.width, 16) * (3 if cell.arch == "resnet" else 1)


if __name__ == "__main__":
    main()
