"""Tests for normtheory.checks: the shared argument checks."""

import numpy as np
import pytest

from normtheory.checks import check_choice, check_int, is_int


def test_check_choice_returns_value_and_names_choices():
    assert check_choice("mode", "eval", ("train", "eval")) == "eval"
    with pytest.raises(ValueError, match="unknown mode 'test'; valid: train, eval"):
        check_choice("mode", "test", ("train", "eval"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, True),
        (0, True),
        (-3, True),
        (np.int64(4), True),
        (True, False),
        (False, False),
        (1.0, False),
        ("1", False),
        (None, False),
    ],
)
def test_is_int(value, expected):
    assert is_int(value) is expected


def test_check_int_accepts_the_range_and_returns_a_python_int():
    assert check_int("steps", 1) == 1
    assert check_int("seed", 0, minimum=0) == 0
    assert check_int("k", 5, 1, 5) == 5
    out = check_int("n", np.int32(7))
    assert out == 7 and type(out) is int


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"value": 0}, "workers must be an integer >= 1, got 0"),
        ({"value": True}, "workers must be an integer >= 1, got True"),
        ({"value": False, "minimum": 0}, "workers must be an integer >= 0, got False"),
        ({"value": 2.0}, "workers must be an integer >= 1, got 2.0"),
        ({"value": "3"}, "workers must be an integer >= 1, got '3'"),
        ({"value": None}, "workers must be an integer >= 1, got None"),
        ({"value": 1, "minimum": 2}, "workers must be an integer >= 2, got 1"),
        ({"value": 9, "maximum": 8}, "workers must be an integer in [1, 8], got 9"),
        ({"value": 0, "maximum": 8}, "workers must be an integer in [1, 8], got 0"),
    ],
)
def test_check_int_names_the_value_and_the_valid_range(kwargs, message):
    with pytest.raises(ValueError) as info:
        check_int("workers", **kwargs)
    assert str(info.value) == message
