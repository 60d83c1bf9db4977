"""Data-parallel speedup curves: how much faster one trial trains on ``k`` GPUs than on one.

A :class:`ScalingCurve` is built from a spec:

* ``"linear"``: ``s(k) = k`` (no communication cost; optimistic);
* ``"amdahl:P"``: ``s(k) = 1 / ((1 - P) + P / k)`` with parallel fraction ``0 < P <= 1``;
* ``"power:A"``: ``s(k) = k ** A`` with ``0 < A <= 1``;
* a preset measured on one 8×V100 machine (``"resnet18"``, ``"resnet50"``, ``"resnet101"``,
  ``"imagenet-resnet50"``, ``"babi"``);
* a table ``{gpus: speedup}`` such as ``{1: 1.0, 2: 1.9, 4: 3.5, 8: 6.2}``, interpolated
  piecewise linearly and flat past its last entry, so a planner never buys GPUs the table
  does not show to help.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import itertools
import math

PRESETS: dict[str, dict[int, float]] = {
    "resnet18": {1: 1.0, 2: 1.854, 4: 3.426, 8: 5.398},
    "resnet50": {1: 1.0, 2: 1.870, 4: 3.421, 8: 5.598},
    "resnet101": {1: 1.0, 2: 1.892, 4: 3.632, 8: 6.672},
    "imagenet-resnet50": {1: 1.0, 2: 1.77, 4: 2.93, 8: 4.29},
    # Measured to 32 GPUs: 1, 1.62, 2.027, 2.75, 2.48, 2.48. Past 8 GPUs it gets *worse*, so
    # the curve is kept up to its peak; the flat extrapolation then never buys those GPUs.
    "babi": {1: 1.0, 2: 1.62, 4: 2.027, 8: 2.75},
}


@dataclass(frozen=True)
class ScalingCurve:
    """Speedup ``s(k)`` of one trial on ``k`` GPUs relative to one GPU.

    Args:
        kind: ``"table"``, ``"linear"``, ``"amdahl"`` or ``"power"``.
        parameter: Amdahl's parallel fraction or the power-law exponent (unused otherwise).
        table: For ``kind="table"``: sorted ``(gpus, speedup)`` points starting at ``(1, 1.0)``.

    Use :meth:`parse` rather than the constructor.

    Example:
        >>> curve = ScalingCurve.parse("amdahl:0.95")
        >>> round(curve.speedup(8), 3)
        5.926
        >>> ScalingCurve.parse({1: 1.0, 2: 1.9, 4: 3.5}).speedup(3)
        2.7
    """

    kind: str
    parameter: float = 1.0
    table: tuple[tuple[int, float], ...] = field(default=())

    @classmethod
    def parse(cls, spec: str | Mapping[int, float] | ScalingCurve) -> ScalingCurve:
        """Build a curve from a preset name, ``"amdahl:P"``, ``"power:A"``, or a table."""
        if isinstance(spec, ScalingCurve):
            return spec
        if isinstance(spec, Mapping):
            return cls._from_table(spec)
        if not isinstance(spec, str):
            raise TypeError(
                f"scaling={spec!r} has type {type(spec).__name__}; give a preset name "
                f"({', '.join(sorted(PRESETS))}), 'linear', 'amdahl:P', 'power:A' or a "
                "table {gpus: speedup}."
            )
        text = spec.strip().lower()
        if text in PRESETS:
            return cls._from_table(PRESETS[text])
        if text == "linear":
            return cls(kind="linear")
        name, sep, arg = text.partition(":")
        if sep and name in ("amdahl", "power"):
            try:
                value = float(arg)
            except ValueError:
                raise ValueError(
                    f"scaling={spec!r}: {arg!r} is not a number; e.g. 'amdahl:0.95'."
                ) from None
            if not (0.0 < value <= 1.0):
                raise ValueError(
                    f"scaling={spec!r}: the {name} parameter must lie in (0, 1], got {value}."
                )
            return cls(kind=name, parameter=value)
        raise ValueError(
            f"scaling={spec!r} is not known; valid: 'linear', 'amdahl:P' (0<P<=1), "
            f"'power:A' (0<A<=1), a preset ({', '.join(sorted(PRESETS))}) or a table "
            "{gpus: speedup} such as {1: 1.0, 2: 1.9, 4: 3.5}."
        )

    @classmethod
    def _from_table(cls, table: Mapping[int, float]) -> ScalingCurve:
        points: list[tuple[int, float]] = []
        for gpus, speedup in table.items():
            if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
                raise ValueError(f"scaling table key {gpus!r} must be a whole number of GPUs >= 1.")
            if isinstance(speedup, bool) or not isinstance(speedup, (int, float)):
                raise TypeError(f"scaling table value {speedup!r} for {gpus} GPUs is not a number.")
            if not math.isfinite(speedup) or speedup <= 0:
                raise ValueError(
                    f"scaling table speedup {speedup!r} at {gpus} GPUs must be positive and finite."
                )
            if speedup > gpus + 1e-9:
                raise ValueError(
                    f"scaling table gives speedup {speedup} at {gpus} GPUs, more than {gpus}; "
                    "data-parallel speedup cannot exceed the number of GPUs."
                )
            points.append((gpus, float(speedup)))
        points.sort()
        if not points or points[0] != (1, 1.0):
            raise ValueError(
                f"scaling table {dict(table)!r} must start with 1: 1.0 "
                "(speedup relative to one GPU)."
            )
        for (k0, s0), (k1, s1) in itertools.pairwise(points):
            if s1 <= s0:
                raise ValueError(
                    f"scaling table {dict(table)!r} is not increasing: {k1} GPUs give {s1}, "
                    f"no more than {s0} at {k0} GPUs. Give the curve up to its peak only; "
                    "past the last entry no more GPUs are ever bought."
                )
        return cls(kind="table", table=tuple(points))

    def speedup(self, gpus: int) -> float:
        """Return ``s(gpus)``; ``s(1) == 1``."""
        if gpus < 1:
            raise ValueError(f"gpus={gpus} must be >= 1.")
        if self.kind == "linear":
            return float(gpus)
        if self.kind == "amdahl":
            return 1.0 / ((1.0 - self.parameter) + self.parameter / gpus)
        if self.kind == "power":
            return float(float(gpus) ** self.parameter)
        for (k0, s0), (k1, s1) in zip(self.table, self.table[1:]):
            if gpus <= k1:
                return s0 + (s1 - s0) * (gpus - k0) / (k1 - k0)
        return self.table[-1][1]

    @property
    def max_useful_gpus(self) -> float:
        """The largest GPU count that still speeds a trial up (``inf`` for formulas)."""
        return float(self.table[-1][0]) if self.kind == "table" else math.inf

    def to_spec(self) -> str | dict[int, float]:
        """The inverse of :meth:`parse`, for JSON."""
        if self.kind == "table":
            return dict(self.table)
        if self.kind == "linear":
            return "linear"
        return f"{self.kind}:{self.parameter}"
