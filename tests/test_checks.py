"""Argument checks: each error names the argument, echoes what was received and says the fix."""

import numpy as np
import pytest

from tf_prompt_tuning._checks import (
    check_choice,
    check_deep,
    check_positive_float,
    check_positive_int,
)


@pytest.mark.parametrize(
    "value, error, match",
    [
        (0.0, ValueError, r"`rate` must be a finite number above 0. Received: rate=0.0."),
        (-1, ValueError, r"Received: rate=-1."),
        (float("inf"), ValueError, r"Received: rate=inf."),
        (float("nan"), ValueError, r"Received: rate=nan."),
        ("0.1", TypeError, r"`rate` must be a positive number. Received: rate='0.1' \(of type str\)."),
        (True, TypeError, r"Received: rate=True \(of type bool\)."),
    ],
)
def test_positive_float_check_refuses_what_is_not_a_finite_positive_number(value, error, match):
    with pytest.raises(error, match=match):
        check_positive_float("rate", value)
    assert check_positive_float("rate", 3) == 3.0


@pytest.mark.parametrize(
    "value, error, match",
    [(0, ValueError, r"`steps` must be a positive integer. Received: steps=0."),
     (2.0, TypeError, r"Received: steps=2.0 \(of type float\)."),
     (True, TypeError, r"Received: steps=True \(of type bool\).")],
)  # fmt: skip
def test_positive_int_check(value, error, match):
    with pytest.raises(error, match=match):
        check_positive_int("steps", value)
    assert check_positive_int("steps", np.int64(3)) == 3


def test_choice_check_compares_types_too():
    assert check_choice("mode", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"`mode` must be one of \(1, 2\). Received: mode=True. Use 1."):
        check_choice("mode", True, (1, 2), hint="Use 1.")


def test_deep_check_spells_true_as_the_first_kind():
    assert check_deep(True, ("hidden", "prefix")) == "hidden" and check_deep(None, ("hidden",)) is False
    with pytest.raises(ValueError, match=r'`deep` must be False, "hidden" \(or True\) or "prefix". Received: deep=\'x\''):
        check_deep("x", ("hidden", "prefix"))
