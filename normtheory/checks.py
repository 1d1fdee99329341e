"""Argument checks shared by the library: errors name the bad value and the valid choices."""

import numbers
from collections.abc import Iterable


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Returns `value` if it is one of `choices`, else raises ValueError naming both."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(choices)}")
    return value


def is_int(value: object) -> bool:
    """Whether `value` is an integer (Python or NumPy); ``True``/``False`` are not."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value: object, minimum: int = 1, maximum: int | None = None) -> int:
    """Returns `value` as an int if it is an integer in [`minimum`, `maximum`], else raises.

    ``True``/``False`` are refused (bool is an int subclass, but ``steps=True`` is a mistake);
    NumPy integers are accepted and returned as Python ints.

    Raises:
        ValueError: naming `name`, the bad value and the valid range, e.g.
            ``workers must be an integer >= 1, got 0``.
    """
    ok = is_int(value) and value >= minimum and (maximum is None or value <= maximum)
    if not ok:
        valid = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an integer {valid}, got {value!r}")
    return int(value)
