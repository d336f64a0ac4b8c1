"""Argument checks shared by the public API: each error names the argument,
echoes what was received and says the fix."""

from __future__ import annotations

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
