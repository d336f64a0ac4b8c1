"""Argument checks shared by the public API: each error names the argument,
echoes what was received and says the fix."""

from __future__ import annotations

import math
import numbers


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be a positive integer. "
            f"Received: {name}={value!r} (of type {type(value).__name__})."
        )
    if value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value}.")
    return int(value)


def check_positive_float(name: str, value) -> float:
    """`value` as a float if it is a finite number above 0 (NaN and infinity refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be a positive number. Received: {name}={value!r} (of type {type(value).__name__})."
        )
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a finite number above 0. Received: {name}={value!r}.")
    return float(value)


def check_choice(name: str, value, choices, hint: str = ""):
    """`value` if it is one of `choices`, else a ValueError naming the argument."""
    if not any(value == choice and type(value) is type(choice) for choice in choices):
        raise ValueError(
            f"`{name}` must be one of {tuple(choices)}. Received: {name}={value!r}." + (f" {hint}" if hint else "")
        )
    return value


def check_deep(deep, spellings):
    """`deep` as False or one of `spellings` (`True` means the first)."""
    if not isinstance(deep, str):
        return spellings[0] if deep else False
    if deep in spellings:
        return deep
    choices = " or ".join(f'"{s}"' + (" (or True)" if i == 0 else "") for i, s in enumerate(spellings))
    raise ValueError(f"`deep` must be False, {choices}. Received: deep={deep!r}.")
