"""Argument checks the planning dataclasses share: whole numbers and finite non-negative numbers.

Each raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one out of
range, with a message that names the field (``owner.name`` when an owner is given) and what
is valid.
"""

from __future__ import annotations

import math


def _label(name: str, owner: str) -> str:
    return f"{owner}.{name}" if owner else name


def whole(value: object, name: str, minimum: int = 1, *, owner: str = "") -> int:
    """``value`` if it is an ``int`` (not a ``bool``) of at least ``minimum``.

    Example:
        >>> whole(3, "n_trials")
        3
        >>> whole(0, "n_trials", owner="Rung")
        Traceback (most recent call last):
        ...
        ValueError: Rung.n_trials=0 must be >= 1.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{_label(name, owner)}={value!r} must be a whole number (int), "
            f"not {type(value).__name__}."
        )
    if value < minimum:
        raise ValueError(f"{_label(name, owner)}={value} must be >= {minimum}.")
    return value


def number(value: object, name: str, *, positive: bool = False, owner: str = "") -> float:
    """``value`` as a float if it is a finite number ``>= 0`` (``> 0`` with ``positive``).

    Example:
        >>> number(2, "cost")
        2.0
        >>> number(0.0, "epoch_seconds", positive=True)
        Traceback (most recent call last):
        ...
        ValueError: epoch_seconds=0.0 must be > 0 and finite.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{_label(name, owner)}={value!r} must be a number, not {type(value).__name__}."
        )
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{_label(name, owner)}={value!r} must be {bound} and finite.")
    return float(value)
