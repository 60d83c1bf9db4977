"""The workload as the run measures it: epoch times, speedups and launch overheads.

Pure functions of :class:`~optuna_seer.execution.results.LaunchRecord` sequences and the
planning core's types (no Optuna, no backend): the tuner feeds their answers to the
re-planner and to the budget guard.
"""

from __future__ import annotations

from collections.abc import Sequence
import statistics

from optuna_seer.execution.results import LaunchRecord
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.scaling import ScalingCurve
from optuna_seer.planning.workload import Workload


def up_to_peak(points: dict[int, float]) -> ScalingCurve:
    """A table curve through ``points`` (``{1: 1.0, ...}``), cut where it stops increasing.

    Example:
        >>> up_to_peak({1: 1.0, 2: 1.8, 4: 1.5, 8: 3.0}).max_useful_gpus
        2.0
    """
    table = {1: 1.0}
    for gpus in sorted(k for k in points if k > 1):
        speedup = min(points[gpus], float(gpus))
        if speedup <= table[max(table)]:
            break
        table[gpus] = speedup
    return ScalingCurve.parse(table)


def curve_from_plan(plan: Plan) -> ScalingCurve:
    """The speedups implied by the plan's per-rung epoch times (linear below its smallest k)."""
    by_gpus = {r.gpus_per_trial: r.epoch_seconds for r in plan.rungs}
    smallest = min(by_gpus)
    return up_to_peak(
        {gpus: smallest * by_gpus[smallest] / seconds for gpus, seconds in by_gpus.items()}
    )


def measured_curve(
    prior: ScalingCurve, epoch_seconds: dict[int, float], max_gpus: int
) -> tuple[float, ScalingCurve]:
    """One-GPU epoch time and speedup curve from measured seconds per epoch at some ``k``.

    Measured speedups replace the prior's where a worker count was measured (relative to one
    worker when it was measured, else through the prior at the smallest measured count);
    the prior fills the other powers of two up to ``max_gpus``. The curve stops at its peak,
    so a count that measured slower is never bought again.

    Example:
        >>> t1, curve = measured_curve(ScalingCurve.parse("linear"), {1: 2.0, 2: 4.0}, 4)
        >>> t1, curve.max_useful_gpus
        (2.0, 1.0)
    """
    smallest = min(epoch_seconds)
    t1 = epoch_seconds[smallest] * prior.speedup(smallest)
    points = {k: t1 / seconds for k, seconds in epoch_seconds.items()}
    gpus = 2
    while gpus <= max_gpus:
        points.setdefault(gpus, prior.speedup(gpus))
        gpus *= 2
    points[1] = 1.0
    return t1, up_to_peak(points)


def measured_epoch_seconds(launches: Sequence[LaunchRecord], workers: int) -> float | None:
    """The median measured seconds per epoch of the launches on ``workers`` workers."""
    values = [
        r.epoch_seconds for r in launches if r.workers == workers and r.epoch_seconds is not None
    ]
    return statistics.median(values) if values else None


def startup_seconds(launches: Sequence[LaunchRecord], workload: Workload | None) -> float:
    """Seconds a launch spends outside its epochs: the measured median, else the workload's."""
    overheads = [r.overhead_seconds for r in launches if r.overhead_seconds is not None]
    if overheads:
        return statistics.median(overheads)
    return workload.startup_seconds if workload is not None else 0.0


def slowdown(
    launch: LaunchRecord, launches: Sequence[LaunchRecord], workload: Workload | None
) -> float:
    """The workload's contention for the launches that ran at once with ``launch`` (at its
    middle, itself included): what its measured times are slower than alone."""
    if workload is None or not any(
        factor != 1.0 for factor in workload.contention_by_launches.values()
    ):
        return 1.0
    middle = (launch.started_at + launch.finished_at) / 2.0
    at_once = sum(1 for r in launches if r.started_at <= middle < r.finished_at)
    return workload.contention_on(max(at_once, 1))


def measured_workload(
    launches: Sequence[LaunchRecord],
    planned: Workload | None,
    plan: Plan,
    slots: int,
) -> Workload | None:
    """The workload as measured so far (``None`` before a launch reported its times).

    Epoch time, speedups and launch overhead, each as if alone (the measurements divided by
    their contention), with the planned workload's contention table, so that rungs running
    more or fewer launches at once are timed for that. Worker counts not measured take the
    planned workload's speedups (the plan's implied ones without a workload).
    """
    by_gpus: dict[int, list[float]] = {}
    overheads: list[float] = []
    for launch in launches:
        factor = slowdown(launch, launches, planned)
        if launch.epoch_seconds is not None:
            by_gpus.setdefault(launch.workers, []).append(launch.epoch_seconds / factor)
        if launch.overhead_seconds is not None:
            overheads.append(launch.overhead_seconds / factor)
    if not by_gpus or not overheads:
        return None
    prior = planned.curve if planned is not None else curve_from_plan(plan)
    t1, curve = measured_curve(prior, {k: statistics.median(v) for k, v in by_gpus.items()}, slots)
    return Workload(
        epoch_seconds=max(t1, 1e-6),
        scaling=curve,
        max_epochs=plan.max_epochs,
        gpus_per_node=planned.gpus_per_node if planned else slots,
        startup_seconds=statistics.median(overheads),
        contention=planned.contention_by_launches if planned else 1.0,
    )
