"""The stability rule and the log-LR bisection against known answers: step functions whose
threshold is set (the bisection must bracket it to the resolution, widen when the start bracket
misses it, and say when it cannot), and runs whose cross-entropy is computed by torch."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from normtheory.stability import (
    PROBE,
    StabilityRule,
    bisect_log,
    lr_search,
    max_stable_lr,
    probe_table,
)
from normtheory.train import TrainResult

RULE = StabilityRule.for_classes(10)


def step(threshold):
    """stable(lr) iff lr ≤ threshold, counting its calls."""
    calls = []

    def stable(lr):
        calls.append(lr)
        return lr <= threshold

    return stable, calls


@pytest.mark.parametrize("threshold", [0.011, 0.2, 0.37, 1.0, 9.9])
def test_bisection_finds_the_threshold_to_the_resolution(threshold):
    stable, calls = step(threshold)
    out = bisect_log(stable, 0.01, 10.0, resolution=0.05)
    assert out.bracketed and out.lo <= threshold < out.hi
    assert 0 < out.width <= 0.05
    assert abs(math.log10(out.estimate / threshold)) <= 0.05
    # the bracket is verified (2 probes), then halved from 3 decades: ceil(log2(3 / 0.05)) = 6
    assert len(out.probes) == len(calls) == 2 + 6
    assert [ok for _, ok in out.probes] == [lr <= threshold for lr in calls]


def test_widens_down_when_lo_is_unstable():
    stable, _ = step(0.002)
    out = bisect_log(stable, 0.01, 10.0, resolution=0.05, widen=0.5, max_widen=4)
    assert out.bracketed and out.lo <= 0.002 < out.hi and out.width <= 0.05
    # lo 0.01 and 10**-2.5 are unstable: the first of them is the verified upper end; hi is
    # never probed
    assert [lr for lr, _ in out.probes[:3]] == pytest.approx([0.01, 10**-2.5, 10**-3])
    assert 10.0 not in [lr for lr, _ in out.probes]


def test_widens_up_when_hi_is_stable():
    stable, _ = step(50.0)
    out = bisect_log(stable, 0.01, 10.0, resolution=0.05, widen=0.5)
    assert out.bracketed and out.lo <= 50.0 < out.hi and out.width <= 0.05
    assert [lr for lr, _ in out.probes[:3]] == pytest.approx([0.01, 10.0, 10**1.5])


def test_all_unstable_cannot_be_bracketed():
    stable, calls = step(1e-9)
    out = bisect_log(stable, 0.01, 10.0, widen=0.5, max_widen=2)
    assert not out.bracketed and out.lo is None
    assert calls == pytest.approx([0.01, 10**-2.5, 10**-3])  # max_widen + 1 tries, never hi
    assert out.hi == pytest.approx(1e-3)  # the smallest LR seen unstable
    assert math.isnan(out.estimate) and math.isnan(out.width)


def test_all_stable_cannot_be_bracketed():
    stable, calls = step(1e9)
    out = bisect_log(stable, 0.01, 10.0, widen=1.0, max_widen=2)
    assert not out.bracketed and out.hi is None
    assert calls == pytest.approx([0.01, 10.0, 100.0, 1000.0])
    assert out.lo == pytest.approx(1000.0)  # the largest LR seen stable


@pytest.mark.parametrize(
    "kw", [dict(lo=1.0, hi=1.0), dict(lo=0.0, hi=1.0), dict(lo=0.1, hi=1.0, resolution=0.0)]
)
def test_bad_bracket_raises(kw):
    with pytest.raises(ValueError):
        bisect_log(lambda lr: True, **kw)


def _losses(accuracy, n=1000, steps=50):
    """Training-loss records of a run whose batches all sit at `accuracy`: each the mean
    cross-entropy (torch) of the most favourable logits at that accuracy (the correctly
    classified examples are certain, the others put their true class just below the winner,
    so each costs barely more than ln 2)."""
    k, y = 10, torch.zeros(n, dtype=torch.long)
    logits = torch.full((n, k), -30.0, dtype=torch.float64)
    right = int(round(accuracy * n))
    logits[:right, 0] = 30.0
    logits[right:, 0], logits[right:, 1] = 30.0, 30.0 + 1e-6
    assert (logits.argmax(1) == y).double().mean().item() == pytest.approx(accuracy)
    return np.full(steps, F.cross_entropy(logits, y).item())


def test_threshold_is_a_tenth_of_chance():
    assert RULE.threshold == pytest.approx(math.log(10) / 10)


def test_a_46_percent_run_is_not_stable():
    """The audit's case: a run ending at 46 % accuracy passed the old rule (test loss below
    ln 10). Even its most favourable losses (≥ 0.54 ln 2) are above the threshold."""
    losses = _losses(0.46)
    assert RULE.final_loss(losses) == pytest.approx(0.54 * math.log(2), rel=1e-4)
    assert not RULE("completed", losses)
    assert RULE("completed", _losses(0.70))  # 0.30 ln 2 = 0.208 < 0.230


def test_rule_needs_completion_and_a_low_final_loss():
    trained = np.r_[np.full(90, 2.0), np.full(10, 0.1)]  # the last 10 % are below threshold
    assert RULE.final_loss(trained) == pytest.approx(0.1)
    assert RULE("completed", trained)
    assert not RULE("diverged", trained)
    spiked = np.r_[trained[:-1], 2.0]  # one spike in the tail: mean (9·0.1 + 2) / 10 = 0.29
    assert RULE.final_loss(spiked) == pytest.approx(0.29)
    assert not RULE("completed", spiked)
    assert not RULE("completed", [])
    assert not RULE("completed", [0.1, math.nan])
    assert StabilityRule(1.0, tail=0.5).final_loss([3.0, 2.0, 1.0]) == pytest.approx(1.5)


def _run(lr, threshold):
    """A fake run: loss 0.01 when lr ≤ threshold, diverged at step 3 otherwise."""
    ok = lr <= threshold
    steps = 10 if ok else 3
    records = pd.DataFrame(
        {"step": range(steps), "metric": "outcome.train_loss", "key": "", "value": 0.01}
    )
    final = {"n_params": 7.0, **({"test_loss": 0.02, "test_acc": 0.99} if ok else {})}
    status = "completed" if ok else "diverged"
    return TrainResult(status, steps, None if ok else 3, final, records, 1.0, "cpu")


def test_lr_search_stores_every_probe():
    result = lr_search(lambda lr: _run(lr, 0.3), RULE, 0.01, 10.0, train_loss="outcome.train_loss")
    rec = result.records
    probes = rec[rec["metric"].str.startswith(PROBE)].pivot(
        index="key", columns="metric", values="value"
    )
    assert len(probes) == result.final["n_probes"] == 8
    lrs = probes[PROBE + "lr"].to_numpy()
    assert ((lrs <= 0.3) == (probes[PROBE + "stable"] == 1)).all()
    assert probes.loc[probes[PROBE + "stable"] == 0, PROBE + "test_acc"].isna().all()
    assert set(rec.loc[rec["metric"] == "outcome.train_loss", "key"]) == set(probes.index)
    f = result.final
    assert f["lr_lo"] <= 0.3 < f["lr_hi"] and f["bracketed"] == 1.0
    assert f["max_stable_lr"] == pytest.approx(math.sqrt(f["lr_lo"] * f["lr_hi"]))
    assert (result.status, result.steps_done, f["n_params"]) == ("completed", 10, 7.0)


def test_lr_search_refuses_runs_without_the_loss():
    with pytest.raises(ValueError, match="no 'missing'"):
        lr_search(lambda lr: _run(lr, 0.3), RULE, 0.01, 10.0, train_loss="missing")


def test_probe_table_and_max_stable_lr_read_the_stored_searches_back():
    """Two searches (norms a, b) as the sweep stores them: `probe_table` has one row per probe
    with the probe's own lr, stability and loss, `max_stable_lr` each search's estimate."""
    records, cells = [], []
    for norm, threshold in (("a", 0.3), ("b", 3.0)):
        result = lr_search(
            lambda lr, t=threshold: _run(lr, t), RULE, 0.01, 10.0, train_loss="outcome.train_loss"
        )
        records.append(result.records.assign(norm=norm, seed=0, cell=f"norm={norm}"))
        final = {f"final_{k}": v for k, v in result.final.items()}
        cells.append({"norm": norm, "seed": 0, "status": "completed", **final})
    cells.append({"norm": "c", "seed": 0, "status": "failed", "final_max_stable_lr": 1.0})
    table = probe_table(pd.concat(records, ignore_index=True))
    assert {"norm", "seed", "probe", "lr", "stable", "train_loss", "test_acc"} <= set(table.columns)
    for norm, threshold in (("a", 0.3), ("b", 3.0)):
        mine = table[table["norm"] == norm].sort_values("probe")
        assert list(mine["probe"]) == list(range(len(mine)))
        assert ((mine["lr"] <= threshold) == mine["stable"]).all()
        assert mine["stable"].dtype == bool
        assert np.allclose(mine["train_loss"], 0.01)  # the rule's final loss of each probe
        assert mine.loc[~mine["stable"], "test_acc"].isna().all()  # diverged: never evaluated
    lr_max = max_stable_lr(pd.DataFrame(cells))
    assert list(lr_max.columns) == ["a", "b"]  # the failed search is left out
    for cell in cells[:2]:
        assert lr_max.loc[0, cell["norm"]] == cell["final_max_stable_lr"]
