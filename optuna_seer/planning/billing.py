"""How a cloud turns the seconds an instance was held into the seconds it bills.

A :class:`BillingRule` rounds a lease (one instance held from start-up to release) up to a
whole number of ``increment_s`` and to at least ``minimum_s``. Common rules:

* ``"exact"``: billed as used (the deterministic model's assumption);
* ``"per-second"``: per second with a one-minute minimum (AWS, GCP, Azure Linux VMs);
* ``"per-hour"``: whole hours, one hour minimum (older AWS, some marketplaces);
* ``"per-second:MIN"``/``"per-minute"``/``"increment:I,minimum:M"`` for anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np
import numpy.typing as npt

from optuna_seer.planning.budget import parse_duration

_PRESETS: dict[str, tuple[float, float]] = {
    "exact": (0.0, 0.0),
    "per-second": (1.0, 60.0),
    "per-minute": (60.0, 60.0),
    "per-hour": (3600.0, 3600.0),
}


def _seconds(text: str, name: str) -> float:
    return 0.0 if text.strip() in ("0", "0s", "0.0", "0.0s") else parse_duration(text, name=name)


@dataclass(frozen=True)
class BillingRule:
    """Billing granularity of one instance lease.

    Args:
        increment_s: Bills are rounded up to a multiple of this many seconds (0: no rounding).
        minimum_s: Every lease is billed at least this long (0: no minimum).

    Example:
        >>> rule = BillingRule.parse("per-hour")
        >>> rule.billed_seconds(3601.0)
        7200.0
        >>> BillingRule.parse("per-second").billed_seconds(12.3)
        60.0
    """

    increment_s: float = 0.0
    minimum_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("increment_s", "minimum_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name}={value!r} must be a number of seconds.")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}={value!r} must be >= 0 and finite.")

    @classmethod
    def parse(cls, spec: str | BillingRule) -> BillingRule:
        """Build a rule from ``"exact"``, ``"per-second"``, ``"per-minute"``, ``"per-hour"``,
        ``"per-second:90s"`` (per second with that minimum) or ``"increment:1m,minimum:10m"``."""
        if isinstance(spec, BillingRule):
            return spec
        if not isinstance(spec, str):
            raise TypeError(f"billing={spec!r} must be a string such as 'per-second'.")
        text = spec.strip().lower()
        if text in _PRESETS:
            return cls(*_PRESETS[text])
        name, sep, arg = text.partition(":")
        if sep and name == "per-second":
            return cls(1.0, _seconds(arg, "billing minimum"))
        if sep and name == "increment":
            parts = dict(p.partition(":")[::2] for p in text.split(","))
            if set(parts) == {"increment", "minimum"}:
                return cls(
                    _seconds(parts["increment"], "billing increment"),
                    _seconds(parts["minimum"], "billing minimum"),
                )
        raise ValueError(
            f"billing={spec!r} is not known; valid: {', '.join(_PRESETS)}, 'per-second:MIN' "
            "(e.g. 'per-second:60s') or 'increment:I,minimum:M' (e.g. 'increment:1m,minimum:10m')."
        )

    def billed_seconds(self, seconds: float) -> float:
        """Seconds billed for a lease of ``seconds``."""
        return float(self.billed_array(np.asarray([seconds], dtype=float))[0])

    def billed_array(self, seconds: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """:meth:`billed_seconds` for many leases at once."""
        if self.increment_s == 0 and self.minimum_s == 0:
            return seconds
        billed = seconds
        if self.increment_s > 0:
            # A hair of tolerance so that 3600.0000001 s of float noise is not a second hour.
            billed = np.ceil(seconds / self.increment_s - 1e-9) * self.increment_s
        if self.minimum_s > 0:
            billed = np.maximum(billed, self.minimum_s)
        return np.asarray(billed, dtype=float)

    def to_spec(self) -> str:
        for name, values in _PRESETS.items():
            if values == (self.increment_s, self.minimum_s):
                return name
        return f"increment:{self.increment_s:g}s,minimum:{self.minimum_s:g}s"
