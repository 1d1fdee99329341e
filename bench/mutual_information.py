"""All-pairs mutual information: normtheory's vectorized estimators vs scikit-learn pair by pair.

    python bench/mutual_information.py [--device cpu|cuda] [--neurons 256] [--samples 4096]

Data: a rank-8 Gaussian plus noise, half the neurons through ReLU (atoms at 0) and half through
tanh, float32, like a hidden layer's activations. Timed in one process: ``binned`` and
``gaussian_copula`` over all d(d-1)/2 pairs, and scikit-learn's ``mutual_info_regression`` (KSG,
k = 3) and our ``ksg`` called on a random sample of pairs, extrapolated to all pairs. Each timing
is warmed up once and uses time.perf_counter (with torch.cuda.synchronize on CUDA). Then a bias
table: estimate - truth for bivariate Gaussians, truth -1/2 log(1 - rho^2).
"""

import argparse
import math
import os
import time

import numpy as np
import torch
from sklearn.feature_selection import mutual_info_regression

from normtheory.measure.information import pairwise_mutual_information

TARGETS = {
    "ksg (ours, vectorized over pairs)": 50,
    "binned": 300,
    "gaussian_copula": 10_000,
}  # speed-up over the sklearn loop


def synthetic(n: int, d: int, device: str, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 8, generator=gen) @ torch.randn(8, d, generator=gen) / math.sqrt(8)
    x = z + torch.randn(n, d, generator=gen)
    x[:, : d // 2] = torch.relu(x[:, : d // 2])
    x[:, d // 2 :] = torch.tanh(x[:, d // 2 :])
    return x.to(device)


def timed(fn, device: str, repeats: int = 1, warm_up: bool = True) -> float:
    """Seconds for one call of fn(): median of `repeats` calls, after one warm-up call."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def sklearn_pair(x: np.ndarray, i: int, j: int) -> float:
    return mutual_info_regression(x[:, [i]], x[:, j], n_neighbors=3, random_state=0)[0]


def speed(args) -> None:
    n, d = args.samples, args.neurons
    x = synthetic(n, d, args.device)
    x_np = x.cpu().numpy()
    n_pairs = d * (d - 1) // 2
    rng = np.random.default_rng(0)
    all_pairs = np.stack(np.triu_indices(d, k=1), axis=1)
    sample = all_pairs[rng.choice(n_pairs, size=min(args.sk_pairs, n_pairs), replace=False)]

    sk_times, ksg_times = [], []
    for _ in range(args.repeats):  # interleaved: a load change hits both sides alike
        sk_times.append(
            timed(lambda: [sklearn_pair(x_np, i, j) for i, j in sample], "cpu", warm_up=False)
        )
        ksg_times.append(
            timed(lambda: pairwise_mutual_information(x, method="ksg", pairs=sample), args.device)
        )
    sk_pair, ours_ksg = float(np.median(sk_times)) / len(sample), float(np.median(ksg_times))
    rows = [("sklearn mutual_info_regression (loop)", sk_pair * n_pairs, True)]
    rows.append(("ksg (ours, vectorized over pairs)", ours_ksg / len(sample) * n_pairs, True))
    for method in ("binned", "gaussian_copula"):
        t = timed(lambda m=method: pairwise_mutual_information(x, method=m), args.device, 3)
        rows.append((method, t, False))

    print(f"\n## Speed: all {n_pairs:,} pairs of {d} neurons x {n} samples on {args.device}")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"torch threads: {torch.get_num_threads()}, CPU cores: {os.cpu_count()}, load: {load}")
    if torch.get_num_threads() > 1 and os.getloadavg()[0] > (os.cpu_count() or 1):
        print("note: load exceeds the cores; torch's thread pool then stalls on every op")
        print("(sklearn's loop is single-threaded): compare with --threads 1")
    print(f"sklearn and ksg rows: {len(sample)} random pairs, median of {args.repeats} interleaved")
    print("timings, extrapolated to all pairs (marked *); the others time all pairs")
    print("(median of 3 calls). Each of our timings follows one warm-up call.\n")
    print(
        f"| {'method':40s} | {'time (s)':>10s} | {'per pair':>10s} | {'speed-up':>10s} | target |"
    )
    print(f"|{'-' * 42}|{'-' * 12}|{'-' * 12}|{'-' * 12}|--------|")
    sk_total = rows[0][1]
    for name, t, extrapolated in rows:
        ratio = sk_total / t
        target = TARGETS.get(name)
        verdict = "" if target is None else f"≥{target:,}× {'ok' if ratio >= target else 'MISS'}"
        label = name + (" *" if extrapolated else "")
        print(
            f"| {label:40s} | {t:10.3f} | {t / n_pairs * 1e6:8.1f}µs | {ratio:9.1f}× | {verdict} |"
        )

    ours = pairwise_mutual_information(x, method="ksg", pairs=sample).matrix.cpu()
    cols = {int(c): a for a, c in enumerate(np.unique(sample))}
    pairs = [(float(ours[cols[i], cols[j]]), sklearn_pair(x_np, i, j)) for i, j in sample]
    raw = max(abs(a - b) for a, b in pairs)
    clipped = max(abs(max(a, 0.0) - b) for a, b in pairs)  # sklearn clips estimates below 0
    print(
        f"\nksg (ours) vs sklearn on the timed pairs: max |difference| = {raw:.4f} nats; "
        f"{clipped:.4f} with ours clipped at 0 as sklearn's are (target ≤ 0.02: "
        f"{'ok' if clipped <= 0.02 else 'MISS'}). The rest: different draws of the tie-breaking jitter."
    )


def breakdown(args, pairs: int = 64) -> None:
    """Where ksg's time goes, per pair: the k-NN search (block pass, then windows) and the two
    neighbour counts (n_x, n_y: four binary searches a sample). The rows are sorted once for
    all pairs (negligible over 32 640 pairs). The counts are needed whatever the k-NN search
    costs, so sklearn's time per pair over theirs bounds this design's speed-up from above."""
    from normtheory.measure import _ksg
    from normtheory.measure._rank import sort_rows

    n, d = args.samples, args.neurons
    x = synthetic(n, d, args.device).T.contiguous().to(torch.float64)
    p = min(pairs, d // 2)
    pos = torch.stack([torch.arange(p), torch.arange(p) + d // 2], 1).to(x.device)
    srt, order = sort_rows(x)
    xs, ys = srt[pos[:, 0]], x[pos[:, 1]].gather(1, order[pos[:, 0]])
    eps = _ksg.kth_maxnorm(xs, ys, 3)
    ysrt = srt[pos[:, 1]]
    parts = {
        "whole ksg_mi": lambda: _ksg.ksg_mi(x, pos, 3, torch.Generator().manual_seed(0)),
        "k-NN search (kth_maxnorm)": lambda: _ksg.kth_maxnorm(xs, ys, 3),
        "  of which the block pass": lambda: _ksg._block_kth(xs, ys, 3),
        "neighbour counts n_x, n_y": lambda: (
            _ksg._strict_count(xs, xs, eps),
            _ksg._strict_count(ysrt, ys, eps),
        ),
    }
    per = {k: timed(f, args.device, 3) / p for k, f in parts.items()}
    x_np = x.T.cpu().numpy()
    sk = timed(lambda: [sklearn_pair(x_np, i, j) for i, j in pos[:8].tolist()], "cpu", 3) / 8
    print(f"\n## Where ksg's time goes ({p} pairs x {n} samples, per pair, median of 3)\n")
    for k, v in per.items():
        print(f"| {k:28s} | {1e6 * v:9.0f} µs |")
    print(f"| {'sklearn (8 of the pairs)':28s} | {1e6 * sk:9.0f} µs |")
    floor = per["neighbour counts n_x, n_y"]
    print(
        f"\nThe neighbour counts alone take {1e6 * floor:.0f} µs a pair: even a free k-NN "
        f"search would leave this design at most {sk / floor:.1f}× faster than sklearn "
        f"(the 50× target allows {1e6 * sk / 50:.0f} µs a pair)."
    )


def bias(args, rhos=(0.0, 0.3, 0.6, 0.9), repeats: int = 5) -> None:
    n = args.samples
    methods = ("binned", "gaussian_copula", "ksg", "sklearn")
    errors = {(m, r): [] for m in methods for r in rhos}
    for rho in rhos:
        truth = -0.5 * math.log(1 - rho**2)
        for seed in range(repeats):
            z = np.random.default_rng(seed).standard_normal((n, 2))
            x = np.c_[z[:, 0], rho * z[:, 0] + math.sqrt(1 - rho**2) * z[:, 1]]
            xt = torch.from_numpy(x).to(args.device)
            for m in methods[:3]:
                est = float(pairwise_mutual_information(xt, method=m).matrix[0, 1])
                errors[m, rho].append(est - truth)
            errors["sklearn", rho].append(sklearn_pair(x, 0, 1) - truth)
    print(f"\n## Bias: estimate - truth (nats), bivariate Gaussians, N = {n}, {repeats} seeds")
    print("(mean ± sd over seeds; sklearn clips negative estimates to 0, ours does not)\n")
    print(
        "| method | "
        + " | ".join(f"rho = {r} (I = {-0.5 * math.log1p(-(r**2)) + 0.0:.3f})" for r in rhos)
        + " |"
    )
    print("|---|" + "---|" * len(rhos))
    for m in methods:
        cells = [f"{np.mean(errors[m, r]):+.4f} ± {np.std(errors[m, r]):.4f}" for r in rhos]
        print(f"| {m} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--neurons", type=int, default=256)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--sk-pairs", type=int, default=40, help="pairs timed for sklearn/ksg")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved sklearn/ksg timings")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--breakdown", action="store_true", help="only where ksg's time goes, per pair"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.breakdown:
        breakdown(args)
        return
    speed(args)
    bias(args)


if __name__ == "__main__":
    main()
