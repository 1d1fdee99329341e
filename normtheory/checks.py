"""Argument checks shared by the library: errors name the bad value and the valid choices."""

from collections.abc import Iterable


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Returns `value` if it is one of `choices`, else raises ValueError naming both."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(choices)}")
    return value
