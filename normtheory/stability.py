"""The largest stable learning rate: a stated stability rule and a bisection in log(LR).

Stability rule (`StabilityRule`): a run is *stable* when it does not diverge (no NaN/inf
training loss: `normtheory.train.train` stops it with status ``diverged``) and its final
training loss — the mean of the training-batch losses over the last `tail` fraction of its
steps — is below `threshold`. Every misclassified example costs at least ln 2 of cross-entropy
(its true class has probability ≤ 1/2), so a mean loss L bounds the error on those batches by
L / ln 2: a threshold τ guarantees a training accuracy above 1 − τ / ln 2. The default
τ = ln(K) / 10, a tenth of the chance-level loss ln K of K classes (0.230 for 10 classes),
guarantees above 66.8 % (a run at 46 % accuracy has a loss of at least 0.54 ln 2 = 0.374 > τ).

Bisection (`bisect_log`): the largest stable LR between a bracket [lo, hi] that is first
verified (lo stable, hi unstable; widened by a factor ``10**widen`` per try, at most
`max_widen` tries per side, else the search says it could not bracket), then halved in log(LR)
until log10(hi / lo) ≤ `resolution`. It assumes stability is monotone in the LR inside the
bracket (stable below a threshold, unstable above); every probe is kept, so a non-monotone
pattern shows in the figures. `lr_search` runs it on training runs and stores every probe;
`probe_table` and `max_stable_lr` read the stored searches back.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from normtheory.analysis import wide
from normtheory.train import TrainResult

PROBE = "lr_search."  # metric prefix of the stored probes (one key per probe, in probe order)
PROBE_METRICS = ("lr", "stable", "train_loss", "test_loss", "test_acc", "steps_done")


@dataclass(frozen=True)
class StabilityRule:
    """Stable = completed (no divergence) and final training loss below `threshold`.

    Attributes:
        threshold: the largest final training loss a stable run may have.
        tail: the fraction of the last training-loss values averaged (at least one value).
    """

    threshold: float
    tail: float = 0.1

    def __post_init__(self):
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")
        if not 0 < self.tail <= 1:
            raise ValueError(f"tail must be in (0, 1], got {self.tail}")

    @classmethod
    def for_classes(cls, num_classes: int, share: float = 10, **kw) -> "StabilityRule":
        """The default rule: threshold the chance-level loss ln K divided by `share` (a tenth)."""
        if not share > 1:
            raise ValueError(f"share must be > 1, got {share}")
        return cls(threshold=math.log(num_classes) / share, **kw)

    def final_loss(self, losses: Sequence[float]) -> float:
        """Mean of the last ``ceil(tail · n)`` of the `n` training losses (NaN when none)."""
        values = np.asarray(losses, dtype=float)
        if values.size == 0:
            return math.nan
        return float(values[-math.ceil(self.tail * values.size) :].mean())

    def __call__(self, status: str, losses: Sequence[float]) -> bool:
        final = self.final_loss(losses)
        return status == "completed" and math.isfinite(final) and final < self.threshold


@dataclass(frozen=True)
class Bisection:
    """The outcome of `bisect_log`.

    Attributes:
        lo: the largest LR found stable (None: none was, even after widening).
        hi: the smallest LR found unstable (None: none was).
        probes: every (lr, stable) pair, in the order probed.
    """

    lo: float | None
    hi: float | None
    probes: tuple[tuple[float, bool], ...]

    @property
    def bracketed(self) -> bool:
        return self.lo is not None and self.hi is not None

    @property
    def width(self) -> float:
        """log10(hi / lo) of the final bracket (NaN when not bracketed)."""
        return math.log10(self.hi / self.lo) if self.bracketed else math.nan

    @property
    def estimate(self) -> float:
        """The largest stable LR: the geometric midpoint of the final bracket, within a factor
        ``10**(width / 2)`` of the threshold (NaN when not bracketed)."""
        return math.sqrt(self.lo * self.hi) if self.bracketed else math.nan


def bisect_log(
    stable: Callable[[float], bool],
    lo: float,
    hi: float,
    *,
    resolution: float = 0.05,
    widen: float = 0.5,
    max_widen: int = 4,
) -> Bisection:
    """Largest LR at which `stable(lr)` holds, by bisection in log10(LR).

    Args:
        stable: lr -> whether a run at that LR is stable.
        lo, hi: the starting bracket, 0 < lo < hi.
        resolution: stop when log10(hi / lo) ≤ this.
        widen: log10 step by which an unverified bracket end moves outward.
        max_widen: most outward moves per side; past them the search gives up on that side
            (``lo`` or ``hi`` None).
    """
    if not 0 < lo < hi or not math.isfinite(hi):
        raise ValueError(f"need 0 < lo < hi < inf, got lo={lo}, hi={hi}")
    if not resolution > 0 or not widen > 0 or max_widen < 0:
        raise ValueError(f"need resolution > 0, widen > 0, max_widen ≥ 0, got {resolution}, "
                         f"{widen}, {max_widen}")  # fmt: skip
    probes: list[tuple[float, bool]] = []

    def probe(lr: float) -> bool:
        ok = bool(stable(lr))
        probes.append((lr, ok))
        return ok

    hi_verified = False
    for _ in range(max_widen + 1):  # lo must be stable; an unstable lo is a verified upper end
        if probe(lo):
            break
        hi, hi_verified, lo = lo, True, lo / 10**widen
    else:
        return Bisection(None, hi, tuple(probes))
    if not hi_verified:
        for _ in range(max_widen + 1):  # hi must be unstable; a stable hi is a lower end
            if not probe(hi):
                break
            lo, hi = hi, hi * 10**widen
        else:
            return Bisection(lo, None, tuple(probes))
    while math.log10(hi / lo) > resolution:
        mid = math.sqrt(lo * hi)
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return Bisection(lo, hi, tuple(probes))


def lr_search(
    train_at: Callable[[float], TrainResult],
    rule: StabilityRule,
    lo: float,
    hi: float,
    *,
    train_loss: str,
    **kw,
) -> TrainResult:
    """`bisect_log` over training runs: `train_at(lr)` trains one run, `rule` judges it from its
    status and its records of metric `train_loss`. ``**kw`` go to `bisect_log`.

    Returns:
        A `TrainResult` (status ``completed``: the search itself ran) whose records are each
        probe's records (key = probe index) plus one row per probe and ``PROBE_METRICS`` name
        (``lr_search.lr``, ``.stable``, ``.train_loss`` (the rule's final loss), ``.test_loss``,
        ``.test_acc``, ``.steps_done``; key = probe index), and whose ``final`` holds
        ``max_stable_lr`` (the bisection's estimate), ``lr_lo``, ``lr_hi``, ``bracket_width``
        (log10), ``bracketed`` (1/0), ``n_probes``, the rule's ``stability_threshold`` and the model's
        ``n_params``.
    """
    runs: list[TrainResult] = []

    def stable(lr: float) -> bool:
        result = train_at(lr)
        runs.append(result)
        losses = _values(result.records, train_loss)
        if result.status == "completed" and not losses.size:
            raise ValueError(f"the run at lr={lr:g} recorded no {train_loss!r}: add the hook")
        return rule(result.status, losses)

    search = bisect_log(stable, lo, hi, **kw)
    frames, rows = [], []
    for i, ((lr, ok), result) in enumerate(zip(search.probes, runs)):
        key = str(i)
        frames.append(result.records.assign(key=key))
        values = {
            "lr": lr,
            "stable": float(ok),
            "train_loss": rule.final_loss(_values(result.records, train_loss)),
            "test_loss": result.final.get("test_loss", math.nan),
            "test_acc": result.final.get("test_acc", math.nan),
            "steps_done": float(result.steps_done),
        }
        rows += [(result.steps_done, PROBE + m, key, float(values[m])) for m in PROBE_METRICS]
    frames.append(pd.DataFrame(rows, columns=["step", "metric", "key", "value"]))
    nan = math.nan
    final = {
        "max_stable_lr": search.estimate,
        "lr_lo": search.lo if search.lo is not None else nan,
        "lr_hi": search.hi if search.hi is not None else nan,
        "bracket_width": search.width,
        "bracketed": float(search.bracketed),
        "n_probes": float(len(runs)),
        "stability_threshold": rule.threshold,
        "n_params": runs[0].final.get("n_params", nan),
    }
    return TrainResult(
        status="completed",
        steps_done=max(r.steps_done for r in runs),
        diverged_at=None,
        final=final,
        records=pd.concat([f for f in frames if not f.empty], ignore_index=True),
        wall_time=sum(r.wall_time for r in runs),
        device=runs[0].device,
    )


def probe_table(records: pd.DataFrame, by="norm") -> pd.DataFrame:
    """Every probe of the stored `lr_search` runs, one row each: the `by` column(s), ``seed``,
    ``probe`` (its order in the search), ``lr``, ``stable`` (bool), ``train_loss`` (the rule's
    final loss), ``test_loss``, ``test_acc`` and ``steps_done``.

    Args:
        records: tidy records (`normtheory.results.load`) with the ``lr_search.*`` rows.
        by: the cell field(s) that tell the searches of one seed apart.
    """
    rows = records[records["metric"].str.startswith(PROBE)]
    index = [*([by] if isinstance(by, str) else by), "seed", "key"]
    table = wide(rows, index, prefix=PROBE, dropna=False).reset_index()
    return table.assign(probe=table.pop("key").astype(int), stable=table["stable"] == 1)


def max_stable_lr(cells: pd.DataFrame, by: str = "norm") -> pd.DataFrame:
    """Each completed search's ``max_stable_lr`` per seed (rows) and value of `by` (columns),
    from the cells table (`normtheory.results.load_cells`); NaN where it was not bracketed."""
    done = cells[cells["status"] == "completed"]
    return done.pivot_table(index="seed", columns=by, values="final_max_stable_lr", dropna=False)


def _values(records: pd.DataFrame, metric: str) -> np.ndarray:
    if records.empty:
        return np.array([])
    rows = records[records["metric"] == metric].sort_values("step")
    return rows["value"].to_numpy(dtype=float)
