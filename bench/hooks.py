"""Cost of measuring while training: time per step with hooks against without, and the loop.

Run: ``python bench/hooks.py [--repeats 5] [--steps 200] [--threads 1] [--no-cockpit]
[--json PATH]``. Issue 18's setting: a BN convnet (width 16, depth 3) on the digits, SGD lr 0.1,
batch 64, 200 steps, one torch thread, CPU. Every arm builds the same model from the same seed
and trains it on the same batches; the arms of one repeat run back to back in a rotated order
and the table gives the median over repeats of each arm's ratio to the plain arm of its repeat.

Rows: time per step of the step loop in CPU time of this process (``time.process_time``;
``TrainResult.loop_cpu_s`` for `normtheory.train`), which the targets are judged on, since on
shared cores wall time also counts the waits for other processes; beside it the wall-time
ratio (``1 / TrainResult.steps_per_s``). After the table, the basic monitor's cost by itself
(fired on a fixed batch, no training), against the ×1.05 budget:

- ``normtheory.train`` against a minimal hand-written PyTorch loop (index the batch, forward,
  cross-entropy, ``zero_grad``/``backward``/``step``; no per-step ``.item()``): the loop's own
  cost; target steps/s ratio ≥ 0.95.
- normtheory's hooks against ``normtheory.train`` without hooks: the basic monitor
  (`LossAccuracy` + `GradNorm` + `WeightNorm` every step; target ≤ ×1.05), `HessianSpectrum(k=1)`
  every 50, `OrthogonalWeightNorm` on all layers every step and every 20, `NeuronInformation`
  on a 256-example probe every 50.
- Cockpit's ``economy`` configuration every step (peer: ``pip install --no-deps
  cockpit-for-pytorch backpack-for-pytorch unfoldNd einops json-tricks``, the ``bench`` extra)
  against the same hand-written loop without it; skipped with a message when Cockpit or
  BackPACK is absent or refuses the model.
"""

import argparse
import dataclasses
import importlib.metadata
import json
import sys
import time
import types
import warnings

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from normtheory.experiment import TrainCell, build_cell_model, cell_data
from normtheory.hooks import (
    GradNorm,
    HessianSpectrum,
    LossAccuracy,
    Monitor,
    NeuronInformation,
    OrthogonalWeightNorm,
    WeightNorm,
)
from normtheory.train import build_optimizer, train

CELL = TrainCell(
    dataset="digits",
    data_channels=1,
    norm="batch",
    arch="convnet",
    width=16,
    depth=3,
    optimizer="sgd",
    lr=0.1,
    momentum=0.0,
    batch_size=64,
    steps=200,
)
SEED = 0


def _probe(n: int = 256):
    train_set, _ = cell_data(CELL)
    x, y = train_set.tensors[:2]
    return x[:n], y[:n]


HOOKS = {  # label -> (make hooks, target ratio or None)
    "LossAccuracy+GradNorm+WeightNorm every step": (
        lambda: [LossAccuracy(), GradNorm(), WeightNorm()],
        1.05,
    ),
    "HessianSpectrum(k=1) every 50": (lambda: [HessianSpectrum(k=1, every=50)], None),
    "OrthogonalWeightNorm(all layers) every step": (lambda: [OrthogonalWeightNorm()], 1.3),
    "OrthogonalWeightNorm(all layers) every 20": (lambda: [OrthogonalWeightNorm(every=20)], 1.1),
    "NeuronInformation(256 probe) every 50": (
        lambda: [NeuronInformation(probe=_probe(256), every=50)],
        None,
    ),
}


def _setup(cell: TrainCell):
    train_set, _ = cell_data(cell)
    model = build_cell_model(cell, train_set.in_shape, train_set.num_classes, SEED)
    return train_set, model


def per_step_train(cell: TrainCell, hooks) -> tuple[float, float]:
    """Wall and CPU seconds per step of `normtheory.train`'s step loop (no test set, no
    evaluation)."""
    train_set, model = _setup(cell)
    result = train(model, train_set, None, cell.train_config(SEED, "cpu"), hooks)
    return 1.0 / result.steps_per_s, result.loop_cpu_s / result.steps_done


def monitor_cost(cell: TrainCell, hooks, steps: int = 2000) -> float:
    """CPU seconds per step of the hooks alone: a `Monitor` (flushing every 100 steps, as in
    `train`) fires ``after_backward`` and ``after_step`` `steps` times on one fixed batch, its
    outputs and gradients, without training."""
    train_set, model = _setup(cell)
    x, y = train_set.tensors[0][: cell.batch_size], train_set.tensors[1][: cell.batch_size]
    outputs = model(x)
    loss = F.cross_entropy(outputs, y)
    loss.backward()
    loss = loss.detach()
    monitor = Monitor(model, hooks, flush_every=100, total_steps=steps)
    monitor.start()
    cpu = time.process_time()
    for step in range(steps):
        monitor.after_backward(step, inputs=x, targets=y, outputs=outputs, loss=loss)
        monitor.after_step(step, inputs=x, targets=y, outputs=outputs, loss=loss)
    monitor.end(steps)
    return (time.process_time() - cpu) / steps


def per_step_hand(cell: TrainCell, cockpit_quantities=None) -> tuple[float, float]:
    """Wall and CPU seconds per step of a minimal hand-written loop on the same model, data
    and batches; with `cockpit_quantities`, the same loop under a Cockpit tracking them every
    step."""
    train_set, model = _setup(cell)
    config = cell.train_config(SEED, "cpu")
    x_all, y_all = train_set.tensors[:2]
    generator = torch.Generator().manual_seed(config.seed)
    loss_fn = F.cross_entropy
    if cockpit_quantities is not None:
        from backpack import extend
        from cockpit import Cockpit

        model = extend(_torch_batchnorm(model))
        mean_loss = extend(torch.nn.CrossEntropyLoss(reduction="mean"))
        each_loss = torch.nn.CrossEntropyLoss(reduction="none")
        cockpit = Cockpit(model.parameters(), quantities=cockpit_quantities())
    optimizer = build_optimizer(model, config, None)
    n, b = len(x_all), config.batch_size

    def batches():
        while True:
            perm = torch.randperm(n, generator=generator)
            for start in range(0, n - b + 1, b):
                yield perm[start : start + b]

    stream = batches()
    started, cpu = time.perf_counter(), time.process_time()
    for step in range(config.steps):
        idx = next(stream)
        x, y = x_all[idx], y_all[idx]
        outputs = model(x)
        if cockpit_quantities is None:
            loss = loss_fn(outputs, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        else:
            loss = mean_loss(outputs, y)
            losses = each_loss(outputs, y)
            optimizer.zero_grad(set_to_none=True)
            info = {"batch_size": b, "individual_losses": losses, "loss": loss}
            with cockpit(step, info={**info, "optimizer": optimizer}):
                loss.backward(create_graph=cockpit.create_graph(step))
        optimizer.step()
    loss.item()
    wall = (time.perf_counter() - started) / config.steps
    return wall, (time.process_time() - cpu) / config.steps


def _torch_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with each 2-d normtheory `BatchNorm` swapped for the `torch.nn.BatchNorm2d` it
    computes (same state): BackPACK dispatches on the exact module class."""
    from normtheory.norms.batch import BatchNorm

    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, BatchNorm) and type(child) is not torch.nn.BatchNorm2d:
                swap = torch.nn.BatchNorm2d(
                    child.num_features, child.eps, child.momentum, child.affine
                )
                swap.load_state_dict(child.state_dict())
                setattr(module, child_name, swap)
    return model


def _cockpit_economy():
    """Cockpit's economy quantities, or the reason it cannot run."""
    if "pkg_resources" not in sys.modules:  # cockpit 1.0.2 imports it; setuptools ≥ 81 lacks it
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            shim = types.ModuleType("pkg_resources")
            shim.DistributionNotFound = importlib.metadata.PackageNotFoundError
            shim.get_distribution = lambda name: types.SimpleNamespace(
                version=importlib.metadata.version(name)
            )
            sys.modules["pkg_resources"] = shim
    try:
        import backpack  # noqa: F401
        import cockpit.utils.configuration as configuration
    except ImportError as err:
        return None, f"skipped: Cockpit/BackPACK not installed ({err})"
    return (lambda: configuration.configuration("economy")), None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-cockpit", action="store_true")
    parser.add_argument("--only", choices=["basic", "loop"], default=None)
    parser.add_argument("--width", type=int, default=CELL.width, help="the convnet's channels")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="backpack")  # BatchNorm in training mode: known
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    cell = dataclasses.replace(CELL, steps=args.steps, width=args.width)
    economy, why = (None, "skipped: --no-cockpit") if args.no_cockpit else _cockpit_economy()
    if economy is not None:
        try:
            per_step_hand(dataclasses.replace(cell, steps=2), economy)
        except Exception as err:  # noqa: BLE001 (the peer's refusal is the row's message)
            economy, why = None, f"skipped: Cockpit failed ({type(err).__name__}: {err})"
    hooks = dict(HOOKS)
    if args.only == "basic":
        hooks = {k: v for k, v in hooks.items() if k.startswith("LossAccuracy")}
    elif args.only == "loop":
        hooks = {}
    arms = {"train": lambda: per_step_train(cell, []), "hand": lambda: per_step_hand(cell)}
    arms |= {
        label: (lambda m=make: per_step_train(cell, m())) for label, (make, _) in hooks.items()
    }
    if economy is not None and args.only is None:
        arms["Cockpit economy every step"] = lambda: per_step_hand(cell, economy)
    for run in arms.values():  # warm-up: data cache, kernels
        run()
    times = {label: [] for label in arms}
    labels = list(arms)
    for rep in range(args.repeats):
        for label in labels[rep % len(labels) :] + labels[: rep % len(labels)]:
            times[label].append(arms[label]())
    rows = []

    def row(name: str, label: str, base: str, ratio_of, target: str = "") -> dict:
        """`ratio_of(t, base_t)` per repeat, median over repeats, in CPU and wall time (each
        timing is a (wall, CPU) pair)."""
        wall = {k: np.array([w for w, _ in times[k]]) for k in (label, base)}
        cpu = {k: np.array([c for _, c in times[k]]) for k in (label, base)}
        return {
            "row": name,
            "ms/step": 1e3 * np.median(cpu[label]),
            "base ms/step": 1e3 * np.median(cpu[base]),
            "ratio": float(np.median(ratio_of(cpu[label], cpu[base]))),
            "wall ratio": float(np.median(ratio_of(wall[label], wall[base]))),
            "target": target,
        }

    rows.append(
        row(
            "normtheory.train vs hand-written loop (steps/s ratio)",
            "train",
            "hand",
            lambda t, base: base / t,
            "≥ 0.95",
        )
    )
    for label, (_, target) in hooks.items():
        rows.append(row(label, label, "train", np.divide, f"≤ {target}" if target else ""))
    if "Cockpit economy every step" in times:
        rows.append(
            row(
                "Cockpit economy every step (vs hand loop)",
                "Cockpit economy every step",
                "hand",
                np.divide,
            )
        )
    elif args.only is None:
        rows.append({"row": f"Cockpit economy every step: {why}"})
    table = pd.DataFrame(rows)
    print(
        f"CPU, width {args.width}, {args.steps} steps, batch 64, {args.repeats} repeats, "
        f"{args.threads} thread(s); "
        "ms/step and `ratio` (judged against the targets) in CPU time of this process, "
        "`wall ratio` in wall time"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))
    for row in rows:
        target = row.get("target")
        if target:
            op, value = target.split()
            ok = row["ratio"] >= float(value) if op == "≥" else row["ratio"] <= float(value)
            print(f"{'PASS' if ok else 'FAIL'} {row['row']}: {row['ratio']:.3f} (target {target})")
    basic = next((k for k in hooks if k.startswith("LossAccuracy")), None)
    if basic is not None:  # what the basic monitor costs by itself, against the ×1.05 budget
        make = hooks[basic][0]
        monitor_cost(cell, make(), 200)  # warm-up
        alone = float(np.median([monitor_cost(cell, make()) for _ in range(3)]))
        step = float(np.median([t[1] for t in times["train"]]))
        print(
            f"{basic} alone (fired on a fixed batch, no training; median of 3 × 2000 steps): "
            f"{1e6 * alone:.0f} µs CPU per step = ×{1 + alone / step:.3f} of a "
            f"{1e3 * step:.2f} ms step without hooks (the ×1.05 budget is "
            f"{0.05e6 * step:.0f} µs)"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
