"""`normtheory.evidence`: a `Sample` holds one value per independent seed (a Series indexed by
seed; repeated seeds or a plain list are refused) or a precomputed estimate; its estimate is the
mean with the Student-t 95 % interval, ȳ ± t_{0.975, n−1} · s/√n, against scipy by hand, the sd
floored at resolution/√12 for values read off a grid; `sample` builds one from a mapping."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from normtheory.evidence import LEVEL, CheckValue, Exact, Sample, sample
from normtheory.stats import Estimate

VALUES = pd.Series([0.12, 0.08, 0.15, 0.11, 0.09, 0.13], index=[3, 1, 4, 0, 5, 2])


def test_the_estimate_is_the_student_t_interval_over_seeds():
    est = Sample("GN-BATCH", "bn_rise", VALUES).to_estimate()
    n, sd = len(VALUES), VALUES.std(ddof=1)
    half = stats.t.ppf(0.5 + LEVEL / 2, n - 1) * sd / math.sqrt(n)
    assert LEVEL == 0.95 and est.n == n and est.df == n - 1
    assert (est.value, est.low, est.high) == pytest.approx(
        (VALUES.mean(), VALUES.mean() - half, VALUES.mean() + half), rel=1e-12
    )


def test_a_resolution_floors_the_spread_of_equal_grid_values():
    equal = pd.Series([0.5] * 5)
    assert math.isnan(Sample("C", "s", equal).to_estimate().low)  # no zero-width interval
    est = Sample("C", "s", equal, resolution=0.1).to_estimate()
    half = stats.t.ppf(0.975, 4) * (0.1 / math.sqrt(12)) / math.sqrt(5)
    assert (est.low, est.high) == pytest.approx((0.5 - half, 0.5 + half), rel=1e-12)


def test_a_precomputed_estimate_is_used_as_given():
    given = Estimate(0.3, 0.1, 0.5, 7, "slope", 0.1, 5)
    assert Sample("C", "s", estimate=given).to_estimate() is given


@pytest.mark.parametrize(
    "kw,kind,needle",
    [
        ({}, ValueError, "C/s: give values or an estimate"),
        ({"values": [0.1, 0.2]}, TypeError, "C/s: values must be a pandas Series indexed by seed"),
        (
            {"values": pd.Series([0.1, 0.2, 0.3], index=[0, 0, 1])},
            ValueError,
            "C/s: values must hold one number per independent seed (duplicate seeds",
        ),
    ],
    ids=["nothing", "list", "repeated-seeds"],
)
def test_bad_samples_are_refused(kw, kind, needle):
    with pytest.raises(kind) as info:
        Sample("C", "s", **kw)
    assert needle in str(info.value)


def test_sample_from_a_mapping_drops_nan_and_keeps_the_seeds():
    got = sample("C", "s", {0: 1, 2: float("nan"), 5: 3}, condition="4", detail="d")
    assert got.values.to_dict() == {0: 1.0, 5: 3.0} and got.values.dtype == np.float64
    assert (got.claim, got.name, got.condition, got.detail) == ("C", "s", "4", "d")
    from_series = sample("C", "s", pd.Series([1, 2], index=[7, 8]))
    assert from_series.values.dtype == np.float64 and list(from_series.values.index) == [7, 8]


def test_exact_and_check_values_carry_what_they_are_given():
    assert Exact("BN-GRAD", "max_rel_error", 1e-12, 3).n == 3
    assert CheckValue("GN-BATCH", "bn_trained", 0.9).detail == ""


def test_per_condition_gives_one_sample_per_condition_indexed_by_seed():
    import pandas as pd

    from normtheory.evidence import per_condition

    table = pd.DataFrame(
        {"batch_size": [8, 8, 32, 32], "seed": [0, 1, 0, 1], "change": [0.1, 0.2, -0.1, 0.0]}
    )
    rows = per_condition("GAMMA-WD", "acc_change", table, "batch_size", detail=lambda b: f"B={b}")
    assert [(r.condition, r.detail) for r in rows] == [("8", "B=8"), ("32", "B=32")]
    assert rows[0].values.to_dict() == {0: 0.1, 1: 0.2}
    assert rows[1].values.index.tolist() == [0, 1]
    other = per_condition("GAMMA-WD", "acc_change", table.rename(columns={"change": "d"}),
                          "batch_size", value="d")  # fmt: skip
    assert other[1].values.to_dict() == {0: -0.1, 1: 0.0} and other[0].detail == ""
