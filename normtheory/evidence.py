"""Evidence a study reports for the claims it tests: the values of registered statistics, one
per independent seed (`Sample`, made with `sample`), the worst deviations of identities
(`Exact`) and the values of manipulation checks (`CheckValue`). `normtheory.verdicts` judges
them by the registry's tests."""

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from normtheory.stats import Estimate, Verdict, mean_ci

LEVEL = 0.95  # the confidence level of every interval in the report


@dataclass(frozen=True)
class Sample:
    """Values of a registered statistic, one per independent seed.

    Attributes:
        claim, name: the claim and the registered statistic's name.
        values: a Series indexed by seed (unique: pairs across conditions are not extra seeds),
            or a precomputed `estimate` instead (e.g. a regression slope).
        condition: for a statistic registered ``per`` a condition, its value, e.g. ``4``.
        resolution: the grid step the values are read off (see `normtheory.stats.mean_ci`).
        detail: context for the report.
    """

    claim: str
    name: str
    values: pd.Series | None = None
    condition: str = ""
    resolution: float = 0.0
    detail: str = ""
    estimate: Estimate | None = None

    def __post_init__(self):
        if self.values is None and self.estimate is None:
            raise ValueError(f"{self.claim}/{self.name}: give values or an estimate")
        if self.values is not None:
            if not isinstance(self.values, pd.Series):
                raise TypeError(
                    f"{self.claim}/{self.name}: values must be a pandas Series indexed by seed"
                )
            if not self.values.index.is_unique:
                raise ValueError(
                    f"{self.claim}/{self.name}: values must hold one number per independent seed "
                    f"(duplicate seeds in the index {list(self.values.index)})"
                )

    def to_estimate(self) -> Estimate:
        if self.estimate is not None:
            return self.estimate
        return mean_ci(self.values, level=LEVEL, resolution=self.resolution)


@dataclass(frozen=True)
class Exact:
    """The worst deviation `value` of an identity (its registered tolerance is the SESOI)."""

    claim: str
    name: str
    value: float
    n: int
    detail: str = ""


@dataclass(frozen=True)
class CheckValue:
    """The measured value of a registered manipulation check."""

    claim: str
    name: str
    value: float
    detail: str = ""


Evidence = Sample | Exact | CheckValue | Verdict


def sample(claim: str, name: str, values: Mapping | pd.Series, **kw) -> Sample:
    """`Sample` from a Series or a seed -> value mapping (NaN values are dropped)."""
    series = values if isinstance(values, pd.Series) else pd.Series(dict(values), dtype=float)
    return Sample(claim, name, series.astype(float).dropna(), **kw)


def per_condition(
    claim: str, name: str, table: pd.DataFrame, by: str, *, value: str = "change", detail=None
) -> list[Sample]:
    """One `Sample` of a statistic registered ``per`` a condition for each value of column `by`
    of a long table with a ``seed`` column (e.g. `normtheory.analysis.changes`); `detail(value
    of by) -> str`, if given, writes each row's context."""
    return [
        sample(
            claim,
            name,
            sub.set_index("seed")[value],
            condition=str(cond),
            detail=detail(cond) if detail else "",
        )  # fmt: skip
        for cond, sub in table.groupby(by, sort=True)
    ]
