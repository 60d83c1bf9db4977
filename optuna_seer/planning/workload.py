"""What one trial of the user's training costs in time: the input to every planner."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import math
from typing import Any

from optuna_seer.planning.scaling import ScalingCurve


def _whole(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name}={value!r} must be a whole number (int), not {type(value).__name__}."
        )
    if value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}.")
    return value


def contention_table(
    value: float | Mapping[int, float], name: str = "contention"
) -> tuple[tuple[int, float], ...]:
    """``value`` as sorted ``(launches, slowdown)`` pairs starting at ``(1, 1.0)``.

    A number is the slowdown of two or more launches at once; a mapping gives it per count
    (the factor at the largest count at or below is used). One launch alone is the reference
    (1.0) the other counts are relative to.

    Example:
        >>> contention_table(1.5)
        ((1, 1.0), (2, 1.5))
        >>> contention_table({3: 1.8, 2: 1.4})
        ((1, 1.0), (2, 1.4), (3, 1.8))
    """
    items: list[tuple[Any, Any]]
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(f"{name}={{}} is empty; give a number or {{launches: slowdown}}.")
        items = list(value.items())
    else:
        items = [(2, value)]
    table = []
    for launches, slowdown in items:
        if isinstance(launches, bool) or not isinstance(launches, int) or launches < 1:
            raise ValueError(f"{name} key {launches!r} must be a number of launches >= 1.")
        if isinstance(slowdown, bool) or not isinstance(slowdown, (int, float)):
            raise TypeError(f"{name}[{launches}]={slowdown!r} must be a number.")
        if not math.isfinite(slowdown) or slowdown <= 0 or (launches == 1 and slowdown != 1.0):
            raise ValueError(
                f"{name}[{launches}]={slowdown!r}: slowdowns must be > 0 and finite, and 1.0 for "
                "one launch alone (it is the reference the other counts are relative to)."
            )
        table.append((launches, float(slowdown)))
    table.sort()
    if table[0][0] != 1:
        table.insert(0, (1, 1.0))
    if not isinstance(value, Mapping) and table[1][1] == 1.0:
        table = [(1, 1.0)]
    return tuple(table)


def contention_on(table: tuple[tuple[int, float], ...], launches: int) -> float:
    """The slowdown in ``table`` (from :func:`contention_table`) at the largest count
    ``<= launches``; 1.0 for one launch or none."""
    chosen = 1.0
    for count, slowdown in table:
        if count <= launches:
            chosen = slowdown
    return chosen


@dataclass(frozen=True)
class Workload:
    """The training job every trial runs, as the planner sees it.

    Args:
        epoch_seconds: Seconds one epoch takes on one GPU (a measured profile beats a guess).
        scaling: How much faster ``k`` GPUs train one trial: see :class:`ScalingCurve`.
        max_epochs: Epochs a configuration needs to be fully trained; the finalists get them.
        gpus_per_node: GPUs on one machine; trials up to this size live on one node.
        startup_seconds: Seconds to (re)launch a trial: process start-up, rendezvous and
            checkpoint load. Paid once per trial per rung, since survivors are relaunched.
        contention: How much slower each trial (start-up and epochs) runs when several run
            at once and share the hardware: ``{trials at once: slowdown}`` (the factor at the
            largest count at or below is used; 1 trial: 1.0), or one number for two or more.
            1.0 (the default) when every trial has its own GPUs; on a few shared CPU cores a
            measured profile has it (``Profile.workload`` passes it on).

    Example:
        >>> w = Workload(epoch_seconds=600.0, scaling="amdahl:0.95", max_epochs=40)
        >>> round(w.epoch_seconds_on(4), 1)
        172.5
        >>> Workload(epoch_seconds=10, scaling="linear", max_epochs=3, contention=1.5).contention
        {1: 1.0, 2: 1.5}
    """

    epoch_seconds: float
    scaling: str | Mapping[int, float] | ScalingCurve
    max_epochs: int
    gpus_per_node: int = 8
    startup_seconds: float = 0.0
    contention: float | Mapping[int, float] = 1.0

    def __post_init__(self) -> None:
        for name in ("epoch_seconds", "startup_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name}={value!r} must be a number of seconds.")
            if not math.isfinite(value) or value < 0 or (name == "epoch_seconds" and value == 0):
                bound = "positive" if name == "epoch_seconds" else "non-negative"
                raise ValueError(f"{name}={value!r} must be {bound} and finite.")
        _whole(self.max_epochs, "max_epochs", 1)
        _whole(self.gpus_per_node, "gpus_per_node", 1)
        object.__setattr__(self, "scaling", ScalingCurve.parse(self.scaling))
        object.__setattr__(self, "contention", dict(contention_table(self.contention)))

    def __hash__(self) -> int:
        contention = tuple(sorted(self.contention_by_launches.items()))
        return hash(
            (
                self.epoch_seconds,
                self.scaling,
                self.max_epochs,
                self.gpus_per_node,
                self.startup_seconds,
                contention,
            )
        )

    @property
    def curve(self) -> ScalingCurve:
        assert isinstance(self.scaling, ScalingCurve)
        return self.scaling

    @property
    def contention_by_launches(self) -> dict[int, float]:
        assert isinstance(self.contention, dict)
        return self.contention

    def epoch_seconds_on(self, gpus: int) -> float:
        """Seconds one epoch takes on ``gpus`` GPUs alone: ``t1 / s(k)``."""
        return float(self.epoch_seconds) / self.curve.speedup(gpus)

    def contention_on(self, trials: int) -> float:
        """Slowdown of each trial's start-up and epochs when ``trials`` run at once."""
        return contention_on(tuple(self.contention_by_launches.items()), trials)
