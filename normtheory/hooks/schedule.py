"""Named hook schedules: on which steps a hook's per-step events run.

A hook's per-step events (``after_backward``, ``after_step``) run on the steps its schedule
says are due; its ``start`` and ``eval`` events, and ``end`` when it has one, always run. Pass a
schedule wherever a hook takes ``every=``:

- `every(n)`: steps 0, n, 2n, … (the same as ``every=n``);
- `evenly(n_points)`: `n_points` steps spread evenly over the run, the first and the last
  included, resolved once the run's total number of steps is known (``Context.total_steps``);
- `at_end()`: no per-step event; the hook runs at the ``end`` event only (it gets one).

``every=n`` (an int) and ``every=f`` (a callable ``step -> bool``) keep working; `as_schedule`
turns them into schedules.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from normtheory.checks import check_int, is_int


class Schedule:
    """Base class: which steps a hook's per-step events run on.

    Attributes:
        at_end: whether the hook must also run at the ``end`` event (it is added to the
            hook's events when missing).
    """

    at_end: ClassVar[bool] = False

    def due(self, step: int, total_steps: int | None = None) -> bool:
        """Whether a per-step event on `step` (0-based) runs, in a run of `total_steps`."""
        raise NotImplementedError


@dataclass(frozen=True, repr=False)
class _Every(Schedule):
    n: int

    def __post_init__(self):
        check_int("every(n): n", self.n)

    def due(self, step: int, total_steps: int | None = None) -> bool:
        return step % self.n == 0

    def __repr__(self) -> str:
        return f"every({self.n})"


@dataclass(frozen=True, repr=False)
class _Evenly(Schedule):
    n_points: int

    def __post_init__(self):
        check_int("evenly(n_points): n_points", self.n_points)

    def due(self, step: int, total_steps: int | None = None) -> bool:
        if total_steps is None:
            raise ValueError(
                f"{self!r} needs the run's total number of steps, and the context has none: "
                "pass total_steps= to Monitor (the training loop sets it)"
            )
        return step in evenly_steps(self.n_points, total_steps)

    def __repr__(self) -> str:
        return f"evenly({self.n_points})"


@dataclass(frozen=True, repr=False)
class _AtEnd(Schedule):
    at_end: ClassVar[bool] = True

    def due(self, step: int, total_steps: int | None = None) -> bool:
        return False

    def __repr__(self) -> str:
        return "at_end()"


@dataclass(frozen=True)
class _Predicate(Schedule):
    """A user's callable ``step -> bool`` (the old ``every=callable``)."""

    fn: Callable[[int], bool]

    def due(self, step: int, total_steps: int | None = None) -> bool:
        return bool(self.fn(step))


def every(n: int) -> Schedule:
    """Steps 0, n, 2n, … : due when ``step % n == 0`` (``every(1)``: every step).

    Exactly what ``every=n`` has always meant; the last step is due only when n divides it.
    """
    return _Every(n)


def evenly(n_points: int) -> Schedule:
    """`n_points` steps spread evenly over a run of T steps, the first and the last included.

    The due steps are s_i = round(i · (T − 1) / (n_points − 1)), i = 0, …, n_points − 1 (halves
    rounded up), so s_0 = 0 and s_{n_points−1} = T − 1, the last step; with ``n_points == 1``
    only the last step T − 1; with ``n_points >= T`` every step. T is the run's total number of
    steps, read from the context when the hook first asks (``Context.total_steps``, which
    `normtheory.train.train` sets to ``config.steps``); a run that stops early (diverged) does
    not reach the later points.
    """
    return _Evenly(n_points)


def at_end() -> Schedule:
    """Only at the end of training: no per-step event is due and the hook runs at ``end``.

    The hook's ``start`` event, when it has one, still runs (e.g. `OrthogonalWeightNorm` must
    attach there). The same as ``at_end=True`` without ``every`` on the curvature hooks.
    """
    return _AtEnd()


@functools.lru_cache(maxsize=256)
def evenly_steps(n_points: int, total_steps: int) -> frozenset[int]:
    """The steps `evenly(n_points)` makes due in a run of `total_steps` steps (see `evenly`)."""
    n, t = check_int("n_points", n_points), check_int("total_steps", total_steps)
    if n >= t:
        return frozenset(range(t))
    if n == 1:
        return frozenset({t - 1})
    # round(i (t-1) / (n-1)) with halves up, in integers; strictly increasing since n <= t
    return frozenset((2 * i * (t - 1) + (n - 1)) // (2 * (n - 1)) for i in range(n))


def as_schedule(value: int | Callable[[int], bool] | Schedule) -> Schedule:
    """A hook's ``every=`` argument as a `Schedule`: a schedule as is, an int n as `every(n)`,
    a callable ``step -> bool`` as the steps where it returns True."""
    if isinstance(value, Schedule):
        return value
    if is_int(value) and value >= 1:
        return _Every(int(value))
    if callable(value):
        return _Predicate(value)
    raise ValueError(
        "every must be an integer >= 1, a schedule (every(n), evenly(n_points), at_end()) or "
        f"a callable step -> bool, got {value!r}"
    )
