"""Hessian top-5 eigenvalues and trace: normtheory against PyHessian and curvlinops, side by side.

Run: ``python bench/hessian.py [--device cpu|cuda|auto] [--batch 128] [--width 24]
[--repeats 3] [--seed 0] [--json PATH]``. Issue targets: top-5 to relative error <= 1e-4 with
>= 4x fewer Hessian-vector products (HVPs) and >= 3x less wall time than PyHessian at its
defaults; Hutch++ reaching PyHessian's final stderr with <= 1/3 of its HVPs.

A BatchNorm convnet is trained for ``--steps`` SGD steps on digits (8x8), so the Hessian is
not that of the initialization; one batch is then fixed and both libraries measure its
eval-mode loss (PyHessian puts the model in eval mode). Per repeat:

* top-5: PyHessian ``eigenvalues(top_n=5)`` at its defaults (power iteration with deflation,
  maxIter=100, tol=1e-3 per eigenvalue) and `hessian_eigenvalues` (Lanczos, k=5, tol=1e-4),
  alternating which runs first. Error: max_i |λ_i − λ_i^ref| / |λ_i^ref|, both lists sorted
  descending (PyHessian's raw order is checked and reported).
* trace, two groups. ``defaults``: PyHessian ``trace()`` (Hutchinson, maxIter=100, tol=1e-3,
  which stops once two successive running means agree to 1e-3, sometimes after a handful of
  probes); ``100 probes``: the same with tol=0, so all 100 probes are used. In each group
  Hutch++ (Meyer et al. 2021) gets ⌊m/3⌋ products (at least 4), m being PyHessian's count,
  and plain Hutchinson the same budget as a control. PyHessian's final stderr is taken as
  std(q, ddof=1) / √m of its m per-probe quadratic forms q (its ``trace()`` returns q).
  ``err/se`` = |estimate − reference| / stderr shows whether a stderr is believable.

* top-5 at equal accuracy (issue 18): curvlinops' ``HessianLinearOperator`` (its scipy
  operator, ``check_deterministic=False``) with scipy ``eigsh(k=5, which="LA", tol=1e-5)`` —
  the recipe curvlinops documents — against `hessian_eigenvalues(k=5, tol=1e-5)`, on the fixed
  batch and, with ``--batches 8`` (default), on a list of 8 batches (the dataset-wide Hessian,
  the mean of the batches' Hessians: curvlinops' operator over the list, ours given the list).
  Ours runs with ``verify=False`` (convergence judged by the Lanczos residual estimates, as
  ARPACK does) and, as a third row, at its default ``verify=True`` (k more products for the
  true residuals). Targets (``verify=False``, like for like): ≥ 2× fewer HVPs and ≥ 4× less wall time, both at relative error ≤ 1e-5 against the
  float64 reference.

References (float64): the top-5 by scipy ``eigsh`` (ARPACK, tol=1e-10) on a plain-autograd
Hessian operator, independent of the code under test, cross-checked with `hessian_eigenvalues`
(tol=1e-10). The exact trace would cost n ≈ 11k HVPs, so the reference trace is a long Hutch++
run (``--ref-trace-hvp``) with its own stderr: smaller trace errors are not resolved.

PyHessian's HVPs are counted by wrapping ``hessian_vector_product`` in the module
``pyhessian.hessian``, the name its class calls. Times include each side's graph construction
(PyHessian's constructor, our first HVP). Tables show medians over repeats; ratios are medians
of per-repeat paired ratios. On CPU both sides use ``--threads`` (default 1): on shared cores
extra intra-op threads made each HVP ~15x slower and the timings meaningless.
"""

import argparse
import copy
import importlib
import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import Tensor, nn

from normtheory.data import load_dataset
from normtheory.measure.curvature import hessian_eigenvalues
from normtheory.measure.trace import hessian_trace
from normtheory.models import build_model

_PH = importlib.import_module("pyhessian.hessian")  # the module; `pyhessian.hessian` is the class
K = 5
Batch = tuple[Tensor, Tensor]


@contextmanager
def _count_pyhessian_hvps() -> Iterator[list[int]]:
    """Counts calls of the ``hessian_vector_product`` that PyHessian's class looks up."""
    count, orig = [0], _PH.hessian_vector_product

    def counted(*args):
        count[0] += 1
        return orig(*args)

    _PH.hessian_vector_product = counted
    try:
        yield count
    finally:
        _PH.hessian_vector_product = orig


def _setup(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, Batch]:
    """Trains the convnet for `args.steps` SGD steps; returns it (eval mode) and a fixed batch."""
    torch.manual_seed(args.seed)
    train, _ = load_dataset("digits", seed=args.seed)
    model = build_model(
        "convnet", norm="batch", in_shape=train.in_shape, num_classes=10, width=args.width, depth=3
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(args.seed)
    for _ in range(args.steps):
        idx = torch.randint(len(train), (args.batch,), generator=gen)
        loss = F.cross_entropy(model(train.inputs[idx]), train.targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    idx = torch.randperm(len(train), generator=gen)[: args.batch]
    batch = (train.inputs[idx].to(device), train.targets[idx].to(device))
    return model.to(device).eval(), batch


def _reference_eigs(model: nn.Module, batch: Batch, seed: int) -> np.ndarray:
    """Top-K eigenvalues (descending) by ARPACK on a float64 autograd Hessian operator."""
    m = copy.deepcopy(model).double().eval()
    x, y = batch[0].double(), batch[1]
    params = [p for p in m.parameters() if p.requires_grad]
    grads = torch.autograd.grad(F.cross_entropy(m(x), y), params, create_graph=True)
    sizes = [p.numel() for p in params]

    def matvec(v: np.ndarray) -> np.ndarray:
        parts = torch.as_tensor(v.ravel(), device=x.device).split(sizes)
        vs = [part.view_as(p) for part, p in zip(parts, params)]
        hv = torch.autograd.grad(grads, params, vs, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv]).cpu().numpy()

    n = sum(sizes)
    v0 = np.random.default_rng(seed).standard_normal(n)
    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    vals = eigsh(op, k=K, which="LA", tol=1e-10, ncv=4 * K, v0=v0, return_eigenvectors=False)
    return np.sort(vals)[::-1]


def _curvlinops_eigs(model: nn.Module, batches: list[Batch], tol: float, seed: int):
    """Top-K by scipy ``eigsh`` on curvlinops' Hessian operator (float32, as the model); returns
    (descending values, products used). Products are counted at the scipy operator."""
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import aslinearoperator

    params = [p for p in model.parameters() if p.requires_grad]
    op = HessianLinearOperator(
        model, nn.CrossEntropyLoss(), params, batches, check_deterministic=False
    ).to_scipy()
    count = [0]

    def matvec(v):
        count[0] += 1
        return op @ v

    n = op.shape[0]
    counted = aslinearoperator(LinearOperator((n, n), matvec=matvec, dtype=op.dtype))
    v0 = np.random.default_rng(seed).standard_normal(n).astype(op.dtype)
    vals = eigsh(counted, k=K, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
    return np.sort(vals)[::-1], count[0]


def _pyhessian(model: nn.Module, batch: Batch, device: torch.device):
    """A PyHessian object; its constructor runs the first-order pass with create_graph."""
    with warnings.catch_warnings():  # its loss.backward(create_graph=True) warns about a cycle
        warnings.filterwarnings("ignore", message="Using backward")
        return _PH.hessian(model, F.cross_entropy, data=batch, cuda=device.type == "cuda")


def _measure(task: str, group: str, model: nn.Module, batch: Batch, device, seed, budget) -> dict:
    """One timed run of `task` (``eig/`` or ``trace/`` + pyhessian | normtheory | estimator).

    PyHessian's trace runs at its defaults in group ``defaults`` and with tol=0 (all maxIter=100
    probes) in group ``100 probes``; its stderr is std(q, ddof=1) / √m of its m quadratic forms
    q. Our trace estimators spend exactly `budget` products (no early stop).
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    kw = dict(mode="eval", seed=seed)
    copied = copy.deepcopy(model)  # PyHessian leaves a graph in .grad: give it a copy
    torch.manual_seed(seed)  # PyHessian draws its probes from the global RNG
    with _count_pyhessian_hvps() as count:
        sync()
        start = time.perf_counter()  # includes each side's graph construction
        if task == "eig/pyhessian":
            out = _pyhessian(copied, batch, device).eigenvalues(top_n=K)[0]
        elif task == "eig/normtheory":
            out = hessian_eigenvalues(model, F.cross_entropy, batch, k=K, tol=1e-4, **kw)
        elif task == "trace/pyhessian":
            tol = {} if group == "defaults" else dict(maxIter=100, tol=0.0)
            out = _pyhessian(copied, batch, device).trace(**tol)
        else:
            method = task.split("/")[1]
            out = hessian_trace(model, F.cross_entropy, batch, method=method, n_hvp=budget, **kw)
        sync()
        secs = time.perf_counter() - start
    row = dict(task=task, group=group, time=secs, n_hvp=getattr(out, "n_hvp", count[0]))
    if task == "eig/pyhessian":
        raw = np.asarray(out, dtype=np.float64)
        return row | dict(values=np.sort(raw)[::-1], in_order=bool(np.all(np.diff(raw) <= 0)))
    if task == "eig/normtheory":  # n_hvp includes the K products for the true residuals
        return row | dict(values=out.values.numpy(), in_order=True)
    if task == "trace/pyhessian":
        q = np.asarray(out, dtype=np.float64)
        stderr = float(q.std(ddof=1) / np.sqrt(len(q))) if len(q) > 1 else float("nan")
        return row | dict(trace=float(q.mean()), stderr=stderr)
    return row | dict(trace=out.value, stderr=out.stderr)


def main(argv: list[str] | None = None) -> None:
    """Runs the benchmark; prints the tables and verdicts, and saves the numbers with --json."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--width", type=int, default=24)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=100, help="SGD steps before measuring")
    p.add_argument("--ref-trace-hvp", type=int, default=1500, help="budget of reference Hutch++")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: leave as is)")
    p.add_argument("--json", default=None, help="save the numbers to this path")
    p.add_argument("--batches", type=int, default=8, help="batches of the dataset-wide case")
    p.add_argument("--skip-pyhessian", action="store_true", help="only the curvlinops comparison")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    model, batch = _setup(args, device)
    n = sum(q.numel() for q in model.parameters())
    print(f"device={device} torch={torch.__version__} pyhessian={version('pyhessian')} "
          f"threads={torch.get_num_threads()} params={n} batch={args.batch}")  # fmt: skip
    equal = _equal_accuracy(model, batch, device, args)
    if args.skip_pyhessian:
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(dict(config=vars(args), params=n, equal_accuracy=equal.reset_index()
                               .to_dict("records")), fh, indent=1, default=float)  # fmt: skip
        return
    ref, ref_tr = _references(model, batch, args)
    df = _run(model, batch, device, args)
    is_arr = df["values"].map(lambda v: isinstance(v, np.ndarray))
    df["top5_err"] = [
        np.max(np.abs(v - ref) / np.abs(ref)) if a else np.nan for v, a in zip(df["values"], is_arr)
    ]
    df["trace_err"] = (df["trace"] - ref_tr.value).abs() / abs(ref_tr.value)
    df["err/se"] = (df["trace"] - ref_tr.value).abs() / df["stderr"]
    targets = _summarize(df)
    if args.json:
        result = dict(
            config=vars(args),
            params=n,
            versions={m: version(m) for m in ("torch", "pyhessian", "numpy", "scipy")},
            reference=dict(top5=ref.tolist(), trace=ref_tr.value, trace_stderr=ref_tr.stderr),
            runs=df.assign(values=[v.tolist() if a else None for v, a in zip(df["values"], is_arr)])
            .replace({np.nan: None})
            .to_dict("records"),
            targets={k: dict(value=float(v), passed=bool(ok)) for k, (v, ok) in targets.items()},
        )
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, default=float)


def _batches(model: nn.Module, batch: Batch, device, args) -> list[Batch]:
    """`args.batches` batches of `args.batch` training examples: the fixed batch first."""
    train, _ = load_dataset("digits", seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed + 7)
    out = [batch]
    for _ in range(args.batches - 1):
        idx = torch.randperm(len(train), generator=gen)[: args.batch]
        out.append((train.inputs[idx].to(device), train.targets[idx].to(device)))
    return out


def _equal_accuracy(model: nn.Module, batch: Batch, device, args) -> pd.DataFrame:
    """Top-K at tol 1e-5: curvlinops + eigsh vs `hessian_eigenvalues`, on one batch and on
    `args.batches` batches (eval mode: the mean of the batches' Hessians is the Hessian of their
    concatenation, whose float64 eigsh is the reference). Prints the table and the targets."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    sets = {"1 batch": [batch]}
    if args.batches > 1:
        sets[f"{args.batches} batches"] = _batches(model, batch, device, args)
    rows = []
    for name, batches in sets.items():
        whole = (torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
        ref = _reference_eigs(model, whole, args.seed)
        for r in range(args.repeats):
            seed = args.seed + 1 + r
            sides = ("curvlinops", "normtheory", "normtheory+verify")
            for side in sides[:: 1 if r % 2 == 0 else -1]:
                sync()
                start = time.perf_counter()
                if side == "curvlinops":
                    values, n_hvp = _curvlinops_eigs(model, batches, 1e-5, seed)
                else:
                    data = batches[0] if len(batches) == 1 else batches
                    out = hessian_eigenvalues(model, F.cross_entropy, data, k=K, tol=1e-5,
                                              mode="eval", seed=seed, verify=side != "normtheory")  # fmt: skip
                    values, n_hvp = out.values.numpy(), out.n_hvp
                sync()
                secs = time.perf_counter() - start
                err = float(np.max(np.abs(values - ref) / np.abs(ref)))
                rows.append(dict(data=name, side=side, repeat=r, n_hvp=n_hvp, time=secs, err=err))
    df = pd.DataFrame(rows)
    print(f"\ntop-{K} at tol 1e-5 (curvlinops {version('curvlinops-for-pytorch')} + eigsh vs ours)")
    print(
        df.groupby(["data", "side"], sort=False)
        .agg(n_hvp=("n_hvp", "median"), time=("time", "median"), err_max=("err", "max"))
        .to_string(float_format=lambda v: f"{v:.3g}")
    )
    for name in sets:
        part = df[df["data"] == name].pivot(index="repeat", columns="side")
        hvp = float((part.n_hvp.curvlinops / part.n_hvp.normtheory).median())
        wall = float((part.time.curvlinops / part.time.normtheory).median())
        err = float(part.err.normtheory.max())
        for label, value, ok in (
            (f"[{name}] rel err <= 1e-5 (worst repeat)", err, err <= 1e-5),
            (f"[{name}] HVP ratio curvlinops/ours >= 2 (median)", hvp, hvp >= 2),
            (f"[{name}] wall-time ratio curvlinops/ours >= 4 (median)", wall, wall >= 4),
        ):
            print(f"{'PASS' if ok else 'FAIL'}  {label:52s} {value:.3g}")
    return df


def _references(model: nn.Module, batch: Batch, args: argparse.Namespace):
    """Prints and returns the float64 top-K (eigsh, cross-checked) and the long Hutch++ trace."""
    t0 = time.perf_counter()
    ref = _reference_eigs(model, batch, args.seed)
    model64, batch64 = copy.deepcopy(model).double(), (batch[0].double(), batch[1])
    kw = dict(mode="eval", seed=10**6)
    check = hessian_eigenvalues(
        model64, F.cross_entropy, batch64, k=K, tol=1e-10, max_hvp=2000, **kw
    )
    ref_tr = hessian_trace(model64, F.cross_entropy, batch64, n_hvp=args.ref_trace_hvp, **kw)
    agree = np.max(np.abs(check.values.numpy() - ref) / np.abs(ref))
    print(f"reference top-{K} (eigsh, float64): {np.array2string(ref, precision=6)}")
    print(f"  vs hessian_eigenvalues(float64, tol=1e-10): max rel diff {agree:.1e}")
    print(f"reference trace (Hutch++, {ref_tr.n_hvp} HVPs, float64): "
          f"{ref_tr.value:.6g} ± {ref_tr.stderr:.2g}  [{time.perf_counter() - t0:.0f} s]")  # fmt: skip
    return ref, ref_tr


def _run(model: nn.Module, batch: Batch, device: torch.device, args) -> pd.DataFrame:
    """All measurements, one row each.

    The eigen solvers alternate which goes first; each trace group starts with PyHessian, whose
    product count m sets our budget ⌊m/3⌋ (at least 4, the Hutch++ minimum).
    """
    rows = []
    for r in range(args.repeats):
        seed, eig = args.seed + 1 + r, ["eig/pyhessian", "eig/normtheory"]
        plan = [("top-5", task) for task in (eig if r % 2 == 0 else eig[::-1])]
        for group in ("defaults", "100 probes"):
            plan += [(group, f"trace/{m}") for m in ("pyhessian", "hutch++", "hutchinson")]
        budget = 0
        for group, task in plan:
            rows.append(dict(repeat=r, **_measure(task, group, model, batch, device, seed, budget)))
            if task == "trace/pyhessian":
                budget = max(4, rows[-1]["n_hvp"] // 3)
        print(f"repeat {r}: " + ", ".join(f"{x['task']} {x['time']:.2f}s" for x in rows[-8:]))
    return pd.DataFrame(rows)


def _summarize(df: pd.DataFrame) -> dict:
    """Prints the tables, the paired ratios and a PASS/FAIL line per target; returns targets."""
    med = {c: (c, "median") for c in ("n_hvp", "time", "trace", "stderr", "trace_err", "err/se")}
    is_eig = df.task.str.startswith("eig")
    eig = df[is_eig].groupby("task", sort=False).agg(**med, top5_err_max=("top5_err", "max"))
    tr = df[~is_eig].groupby(["group", "task"], sort=False).agg(**med)
    print(f"\nmedians over {df.repeat.nunique()} repeats (top5_err_max: worst repeat)")
    print(eig.dropna(axis=1).to_string(float_format=lambda v: f"{v:.3g}"))
    print(tr.to_string(float_format=lambda v: f"{v:.4g}"))
    out_of_order = int((~df.loc[df.task == "eig/pyhessian", "in_order"].astype(bool)).sum())
    print(f"pyhessian's eigenvalues came out of descending order in {out_of_order} repeat(s)")

    wide = df.pivot(index="repeat", columns=["group", "task"], values=["n_hvp", "time", "stderr"])
    ours, ph = ("top-5", "eig/normtheory"), ("top-5", "eig/pyhessian")
    per = {
        "hvp_ratio": wide.n_hvp[ph] / wide.n_hvp[ours],
        "time_ratio": wide.time[ph] / wide.time[ours],
    }
    for g in ("defaults", "100 probes"):
        hpp, pht = (g, "trace/hutch++"), (g, "trace/pyhessian")
        per[f"hvp_frac[{g}]"] = wide.n_hvp[hpp] / wide.n_hvp[pht]
        per[f"se_ratio[{g}]"] = wide.stderr[hpp] / wide.stderr[pht]
    per = pd.DataFrame(per)
    print("\npaired ratios per repeat (eig: pyhessian / ours; trace: Hutch++ / pyhessian)")
    print(per.to_string(float_format=lambda v: f"{v:.3g}"))
    err, m = eig.loc["eig/normtheory", "top5_err_max"], per.median()
    targets = {
        "top-5 rel err <= 1e-4 (worst repeat)": (err, err <= 1e-4),
        "HVP ratio >= 4 (median)": (m.hvp_ratio, m.hvp_ratio >= 4),
        "wall-time ratio >= 3 (median)": (m.time_ratio, m.time_ratio >= 3),
    }
    for g in ("defaults", "100 probes"):
        frac, se = per[f"hvp_frac[{g}]"].max(), m[f"se_ratio[{g}]"]
        name = f"Hutch++ se <= pyhessian's with <= 1/3 HVPs [{g}]"
        targets[name] = (se, frac <= 1 / 3 and se <= 1)
    print()
    for name, (value, ok) in targets.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name:52s} {value:.3g}")
    return targets


if __name__ == "__main__":
    main()
