"""The two limits a tuning job must respect: a wall-clock deadline and a dollar budget."""

from __future__ import annotations

from dataclasses import dataclass
import math
import re

MAX_SECONDS = 1e13
"""The longest duration the planners take (about 317,000 years): deadlines, timeouts and job
times beyond it are refused, so no time or cost computed from them overflows."""
MAX_DOLLARS_PER_HOUR = 1e6
"""The highest price per instance (or GPU) hour the planners take: a million dollars."""

_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")


def parse_duration(value: str | float | int, *, name: str = "deadline") -> float:
    """Return ``value`` as a positive number of seconds.

    Accepts a number of seconds or a string such as ``"90s"``, ``"45m"``, ``"12h"``,
    ``"1d"`` or a combination like ``"1h30m"``.

    Example:
        >>> parse_duration("1h30m")
        5400.0
        >>> parse_duration(120)
        120.0
    """
    if isinstance(value, bool):
        raise TypeError(
            f"{name}={value!r} is a bool; give seconds as a number or a string like '12h'."
        )
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if not text:
            raise ValueError(f"{name}={value!r} is empty; give e.g. '12h', '90m' or 3600.")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(
                    f"{name}={value!r} is not a duration; use a number of seconds or "
                    "digits with units s, m, h, d (e.g. '12h', '1h30m', '90s')."
                ) from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise TypeError(
            f"{name}={value!r} has type {type(value).__name__}; give seconds as a number "
            "or a string like '12h'."
        )
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_SECONDS:
        raise ValueError(
            f"{name}={value!r:.40} must be a positive, finite duration of at most "
            f"{MAX_SECONDS:.0e} s (about 317,000 years)."
        )
    return seconds


def _positive_finite(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r} must be a number, not {type(value).__name__}.")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive, finite number.")
    return float(value)


def check_price_per_hour(value: object, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a float if it is a finite price per hour in ``(0, MAX_DOLLARS_PER_HOUR]``
    (``[0, …]`` with ``allow_zero``).

    Example:
        >>> check_price_per_hour(1e308, "price_per_gpu_hour")
        Traceback (most recent call last):
        ...
        ValueError: price_per_gpu_hour=1e+308 must be > 0 and at most 1e+06 dollars per hour.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r} must be a number, not {type(value).__name__}.")
    low_ok = value >= 0 if allow_zero else value > 0
    if not math.isfinite(value) or not low_ok or value > MAX_DOLLARS_PER_HOUR:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"{name}={value!r} must be {bound} and at most {MAX_DOLLARS_PER_HOUR:.0e} dollars "
            "per hour."
        )
    return float(value)


@dataclass(frozen=True)
class Budget:
    """A deadline and a dollar budget for one tuning job.

    Args:
        deadline: Wall-clock limit: seconds, or a string such as ``"12h"`` or ``"1h30m"``.
        dollars: The most the job may spend, in US dollars.
        price_per_gpu_hour: What one GPU costs per hour on the chosen cloud/instance.

    Example:
        >>> b = Budget(deadline="12h", dollars=400, price_per_gpu_hour=3.0)
        >>> b.deadline_seconds, b.price_per_gpu_second
        (43200.0, 0.0008333333333333334)
    """

    deadline: str | float
    dollars: float
    price_per_gpu_hour: float

    def __post_init__(self) -> None:
        parse_duration(self.deadline, name="deadline")
        _positive_finite(self.dollars, "dollars")
        check_price_per_hour(self.price_per_gpu_hour, "price_per_gpu_hour")

    @property
    def deadline_seconds(self) -> float:
        return parse_duration(self.deadline, name="deadline")

    @property
    def price_per_gpu_second(self) -> float:
        return float(self.price_per_gpu_hour) / 3600.0
