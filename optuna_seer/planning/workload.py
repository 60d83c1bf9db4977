"""What one trial of the user's training costs in time: the input to every planner.

:class:`TrialTiming` holds the figures every description of a trial shares (one epoch's
seconds on one GPU, the scaling curve, the contention of concurrent launches) and checks
them once. SEER's :class:`Workload` extends it with the job (epochs, node size, one start-up
time); the measured :class:`~optuna_seer.planning.profile.Profile` extends it with spreads,
start-up per worker count and checkpoint size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
import math
from typing import Any

from optuna_seer.planning.checks import number, whole
from optuna_seer.planning.scaling import ScalingCurve


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


def contention_on(table: Iterable[tuple[int, float]], launches: int) -> float:
    """The slowdown in ``table`` (from :func:`contention_table`) at the largest count
    ``<= launches``; 1.0 for one launch or none."""
    chosen = 1.0
    for count, slowdown in table:
        if count <= launches:
            chosen = slowdown
    return chosen


@dataclass(frozen=True)
class TrialTiming:
    """One trial's epoch time on ``k`` GPUs, and how concurrent launches slow each other.

    Args:
        epoch_seconds: Seconds one epoch takes on one GPU (worker).
        scaling: How much faster ``k`` GPUs train one trial: see :class:`ScalingCurve`.
        contention: How much slower each trial (start-up and epochs) runs when several run
            at once and share the hardware: ``{trials at once: slowdown}`` (the factor at the
            largest count at or below is used; 1 trial: 1.0), or one number for two or more.
            1.0 (the default) when every trial has its own GPUs or cores. Keyword only.

    Example:
        >>> t = TrialTiming(600.0, "amdahl:0.95", contention={2: 1.4})
        >>> round(t.epoch_seconds_on(4), 1), t.contention_on(3)
        (172.5, 1.4)
    """

    epoch_seconds: float
    scaling: str | Mapping[int, float] | ScalingCurve
    contention: float | Mapping[int, float] = field(default=1.0, kw_only=True)

    def __post_init__(self) -> None:
        number(self.epoch_seconds, "epoch_seconds", positive=True)
        object.__setattr__(self, "scaling", ScalingCurve.parse(self.scaling))
        object.__setattr__(self, "contention", dict(contention_table(self.contention)))

    def __hash__(self) -> int:
        return hash(
            tuple(
                tuple(sorted(value.items())) if isinstance(value, Mapping) else value
                for value in (getattr(self, f.name) for f in fields(self))
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

    def timing(self) -> dict[str, Any]:
        """This object's :class:`TrialTiming` fields, as keyword arguments for another
        :class:`TrialTiming` (a :class:`Workload` from a profile, or back)."""
        return {f.name: getattr(self, f.name) for f in fields(TrialTiming)}

    def epoch_seconds_on(self, gpus: int) -> float:
        """Seconds one epoch takes on ``gpus`` GPUs alone: ``t1 / s(k)``."""
        return float(self.epoch_seconds) / self.curve.speedup(gpus)

    def contention_on(self, trials: int) -> float:
        """Slowdown of each trial's start-up and epochs when ``trials`` run at once (the
        factor at the largest count ``<= trials``; 1.0 for one trial)."""
        return contention_on(self.contention_by_launches.items(), trials)


@dataclass(frozen=True)
class Workload(TrialTiming):
    """The training job every trial runs, as the planner sees it: a :class:`TrialTiming`
    (``epoch_seconds``, ``scaling``, keyword-only ``contention``) and the job's shape.

    Args:
        max_epochs: Epochs a configuration needs to be fully trained; the finalists get them.
        gpus_per_node: GPUs on one machine; trials up to this size live on one node.
        startup_seconds: Seconds to (re)launch a trial: process start-up, rendezvous and
            checkpoint load. Paid once per trial per rung, since survivors are relaunched.

    A measured profile beats a guess of ``epoch_seconds``; on a few shared CPU cores it has
    the contention too (``Profile.workload`` passes it on).

    Example:
        >>> w = Workload(epoch_seconds=600.0, scaling="amdahl:0.95", max_epochs=40)
        >>> round(w.epoch_seconds_on(4), 1)
        172.5
        >>> Workload(epoch_seconds=10, scaling="linear", max_epochs=3, contention=1.5).contention
        {1: 1.0, 2: 1.5}
    """

    max_epochs: int
    gpus_per_node: int = 8
    startup_seconds: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        whole(self.max_epochs, "max_epochs")
        whole(self.gpus_per_node, "gpus_per_node")
        number(self.startup_seconds, "startup_seconds")

    __hash__ = TrialTiming.__hash__

    def startup_on(self, gpus: int) -> float:
        """Seconds to (re)launch a trial: one figure for every GPU count."""
        return float(self.startup_seconds)
