"""Study declarations: `Grid`, `Profile`, `Study` (and `cross` for grid cases).

A study is a module in the top-level ``studies/`` package (module name == study name) or any
Python file, defining ``STUDY = Study(...)`` (found by `normtheory.registry`). It declares the
claims it tests, a grid of cells, the hooks, the registered statistics it computes and its
figures; `normtheory.sweep.run_sweep` runs it into a run folder and the report reads only what
was stored.
"""

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from normtheory.claims import get_claim
from normtheory.experiment import TrainCell, run_train_cell  # noqa: F401  (re-exported)
from normtheory.hooks import Hook, LossAccuracy
from normtheory.results import Results


@dataclass(frozen=True)
class Grid:
    """The cells of a study: `cases` × the product of `axes`, applied to the `base` cell.

    Attributes:
        base: the cell every other cell is a variation of.
        axes: field -> values; the grid is their product, in axis order.
        cases: optional bundles of field values that vary together (e.g. an optimizer's
            settings: ``{"tag": "SGD+WD", "weight_decay": 5e-3}``); every case is crossed with
            the axes. A field cannot be both a case key and an axis.
        adjust: optional ``cell -> cell`` applied to every cell last, for settings that depend
            on several axes at once (`normtheory.tuning.LrTable`: the learning rate tuned for
            each norm and batch size). The stored config is the adjusted cell.
        keep: optional ``cell -> bool``: only the cells it accepts are run (e.g. an expensive
            batch size for the one norm a claim needs there).
    """

    base: Any
    axes: dict[str, tuple] = field(default_factory=dict)
    cases: tuple[dict, ...] = ()
    adjust: Callable[[Any], Any] | None = None
    keep: Callable[[Any], bool] | None = None

    def __post_init__(self):
        names = {f.name for f in dataclasses.fields(self.base)}
        unknown = [k for k in self.axes if k not in names]
        if unknown:
            raise ValueError(f"unknown grid axes {unknown}; valid keys: {', '.join(sorted(names))}")
        case_keys = self.case_keys
        unknown = [k for k in case_keys if k not in names]
        if unknown:
            raise ValueError(f"unknown case keys {unknown}; valid keys: {', '.join(sorted(names))}")
        both = [k for k in case_keys if k in self.axes]
        if both:
            raise ValueError(f"{both} set by both the cases and the axes; use one of them")

    @property
    def case_keys(self) -> list[str]:
        """Every field some case sets, in first-seen order."""
        return list(dict.fromkeys(k for case in self.cases for k in case))

    @property
    def label_keys(self) -> list[str]:
        """The fields that tell cells apart: when every case has a ``tag``, the tag and the
        case keys the tag does not determine (else all case keys); then the axes."""
        keys = self.case_keys
        if self.cases and all("tag" in case for case in self.cases):
            by_tag: dict[tuple, set] = {}
            for case in self.cases:
                for k in keys:
                    by_tag.setdefault((k, case["tag"]), set()).add(repr(case.get(k)))
            keys = ["tag"] + [
                k
                for k in keys
                if k != "tag" and any(len(by_tag[k, c["tag"]]) > 1 for c in self.cases)
            ]
        return [*keys, *self.axes]

    def cells(self) -> list:
        keys = list(self.axes)
        cells = [
            dataclasses.replace(self.base, **case, **dict(zip(keys, values)))
            for case in (self.cases or ({},))
            for values in product(*self.axes.values())
        ]
        cells = [c for c in cells if self.keep(c)] if self.keep is not None else cells
        return [self.adjust(c) for c in cells] if self.adjust is not None else cells

    def override(self, overrides: dict[str, str]) -> "Grid":
        """Applies CLI-style ``key=value`` strings; ``key=a,b`` makes (or replaces) an axis.
        A single value of a field the cases set replaces it in every case."""
        hints = typing.get_type_hints(type(self.base))
        base, axes, cases = self.base, dict(self.axes), [dict(c) for c in self.cases]
        for key, text in overrides.items():
            if key not in hints:
                raise ValueError(f"unknown key {key!r}; valid keys: {', '.join(hints)}")
            values = tuple(parse_value(key, part, hints[key]) for part in text.split(","))
            if key in self.case_keys:
                if len(values) > 1:
                    raise ValueError(
                        f"{key} is set by the study's cases "
                        f"({', '.join(str(c.get('tag', c)) for c in self.cases)}); "
                        f"give one value for all of them, not {text!r}"
                    )
                cases = [{**c, key: values[0]} if key in c else c for c in cases]
                base = dataclasses.replace(base, **{key: values[0]})
            elif len(values) > 1 or key in axes:
                axes[key] = values
            else:
                base = dataclasses.replace(base, **{key: values[0]})
        return Grid(base, axes, tuple(cases), self.adjust, self.keep)


def cross(*groups: tuple[dict, ...]) -> tuple[dict, ...]:
    """Every combination of one case from each group, merged (later groups win), for
    `Grid.cases`: ``cross(SETUPS, OPTIMIZERS)`` runs every optimizer on every setup."""
    return tuple({k: v for case in combo for k, v in case.items()} for combo in product(*groups))


def parse_value(key: str, text: str, kind) -> Any:
    text = text.strip()
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        return kind(text)
    except ValueError:
        raise ValueError(f"bad value {text!r} for {key}: expected {kind.__name__}") from None


TIERS = ("quick", "standard", "paper")  # lowest first


@dataclass(frozen=True)
class Profile:
    """A named size of a study: its grid and number of seeds.

    Attributes:
        grid, seeds, description: the cells, the seeds per cell, one line saying what runs.
        first_seed: the seeds are ``first_seed`` … ``first_seed + seeds − 1`` (a tuning profile
            starts elsewhere, so its seeds are disjoint from the verdict profiles' 0, 1, …).
        tier: how far its verdicts go (`TIERS`): ``quick`` (digits, minutes on a CPU; part of
            ``normtheory verify``), ``standard`` (real data on a CPU), ``paper`` (the paper's
            scale, a GPU). Empty: the profile's name when it is a tier, else ``quick`` (the
            built-in ``full`` profiles are larger digits grids). The report prefers the verdict
            of the highest tier run.
        cost: what running it takes, for people choosing one, e.g. ``"≈3 min on 2 CPU cores"``.
        changes: protocol changes made after some of the profile's results were seen, one line
            each (what changed, why, what the discarded run showed; the commit says the same).
            A run stores them in its manifest, and the report prints them beside every verdict
            the run decides, so a reader sees which protocols were revised after the fact.
        smoke: cell-field overrides (field -> value) that shrink every cell of the grid to
            seconds on a CPU, e.g. ``{"max_train": 64, "epochs": 1, "width": 4}``: a smoke test
            of a profile meant for a GPU (`smoke_overrides` gives them as ``key=value``
            strings for `Grid.override` or the command line). Each must change some cell (the
            CLI refuses an override that changes none); a value with commas makes a grid axis
            (``"batch_size": "2,32"`` keeps two of the profile's batch sizes). Empty: none.
    """

    grid: Grid
    seeds: int = 1
    description: str = ""
    first_seed: int = 0
    tier: str = ""
    cost: str = ""
    smoke: dict[str, Any] = field(default_factory=dict)
    changes: tuple[str, ...] = ()

    def __post_init__(self):
        if self.tier and self.tier not in TIERS:
            raise ValueError(f"unknown tier {self.tier!r}; valid: {', '.join(TIERS)}")
        names = {f.name for f in dataclasses.fields(self.grid.base)}
        unknown = [k for k in self.smoke if k not in names]
        if unknown:
            raise ValueError(
                f"unknown smoke keys {unknown}; valid keys: {', '.join(sorted(names))}"
            )

    def smoke_overrides(self) -> dict[str, str]:
        """`smoke` as CLI-style ``key=value`` strings (``{"epochs": 1}`` -> ``{"epochs": "1"}``)."""
        return {k: str(v) for k, v in self.smoke.items()}


def profile_tier(name: str, profile: "Profile | None" = None) -> str:
    """The tier of the profile called `name`: its own ``tier``, else `name` when that is a
    tier, else ``quick``."""
    if profile is not None and profile.tier:
        return profile.tier
    return name if name in TIERS else "quick"


def _default_hooks(cell) -> list[Hook]:
    return [LossAccuracy(every=10)]


@dataclass(frozen=True)
class Study:
    """A named study.

    Attributes:
        name: the study's name (its module name).
        title: one line for the report.
        claims: claim ids it tests (see `normtheory.claims`).
        profiles: name -> `Profile`; the built-in studies have ``quick`` and ``full``, a study
            of your own may have just one (the default profile is ``quick`` if there is one,
            else the first).
        hooks: ``cell -> [Hook]``, the measurements of each cell.
        run_cell: ``(cell, seed, *, device, hooks, progress) -> TrainResult``.
        statistics: ``Results -> [Sample | Exact | CheckValue]``: the values of the claims'
            registered statistics and manipulation checks (`normtheory.verdicts`); the registry
            decides the verdicts (`normtheory.verdicts.judge_study`).
        figures: name -> ``Results -> matplotlib Figure``, or ``None`` for a run the figure does
            not apply to (e.g. the learning-rate tuning curves of a run that trained at
            fixed rates): the report draws nothing for it.
        description: what the study measures (defaults to the module docstring).
        source: the .py file a user study was loaded from ("" for the ``studies`` package).
        reference: the profiles the reference report runs (``normtheory verify --reference``;
            empty: the default profile): ``quick`` where the claims are identities or
            mechanisms, also ``standard`` where they are about training outcomes, curvature
            during training or batch statistics (the report takes each claim's verdict from the
            highest tier present).
    """

    name: str
    title: str
    claims: tuple[str, ...]
    profiles: dict[str, Profile]
    hooks: Callable[[Any], list[Hook]] = _default_hooks
    run_cell: Callable[..., Any] = run_train_cell
    statistics: Callable[[Results], list] = lambda results: []
    figures: dict[str, Callable[[Results], Any]] = field(default_factory=dict)
    description: str = ""
    source: str = ""
    reference: tuple[str, ...] = ()

    def __post_init__(self):
        for claim in self.claims:
            get_claim(claim)  # an unknown id raises, naming the known ones
        for name in self.reference:
            if name not in self.profiles:
                raise ValueError(
                    f"reference profile {name!r} of study {self.name} is not one of its "
                    f"profiles: {', '.join(self.profiles)}"
                )

    @property
    def reference_profiles(self) -> tuple[str, ...]:
        """`reference`, else the default profile alone."""
        return self.reference or (self.default_profile,)

    @property
    def default_profile(self) -> str:
        """``quick`` if the study has it, else its first profile."""
        return "quick" if "quick" in self.profiles else next(iter(self.profiles))

    def profile(self, name: str | None = None) -> Profile:
        name = self.default_profile if name is None else name
        if name not in self.profiles:
            raise ValueError(
                f"unknown profile {name!r} for study {self.name}; valid: {', '.join(self.profiles)}"
            )
        return self.profiles[name]

    def tier(self, name: str | None = None) -> str:
        """The tier of profile `name` (`profile_tier`)."""
        name = self.default_profile if name is None else name
        return profile_tier(name, self.profile(name))
