"""Re-plan the rungs that remain from the workload measured so far.

Pure (no Optuna, no backend): the rungs as planned, where the run stands after a rung
(:class:`Standing`) and the measured :class:`~optuna_seer.planning.workload.Workload` in;
the rungs to run next (:class:`Replan`) out.

After each rung but the last, the remaining rungs are re-timed with the measured workload.
If they still end by the deadline within the dollars left and the measured epoch and launch
times are within ``drift_tolerance`` of the plan's, the plan is kept (only its times move).
Otherwise the rest is re-planned with :func:`~optuna_seer.planning.seer.assign_gpus`: the
cheapest workers per trial that meet the deadline and the budget, with fewer survivors if
even that cannot, and a single finalist on the fastest workers as the last resort.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
import math

from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.plan import Rung, format_seconds
from optuna_seer.planning.seer import assign_gpus, gpu_candidates
from optuna_seer.planning.workload import Workload


@dataclass(frozen=True)
class Policy:
    """What re-planning must respect, and when it re-plans.

    Attributes:
        deadline_s: The plan's deadline, seconds from the run's start.
        price_per_gpu_second: Dollars per worker-second.
        limits: The cluster's limits (workers per trial and in all).
        min_marginal_speedup: The plan's least speedup an extra worker must add.
        drift_tolerance: Re-plan when the measured epoch or launch time differs from the
            plan's by more than this fraction (``math.inf``: only when the deadline or the
            budget is at risk).
        planned: The workload the plan was made for (its start-up and contention give the
            planned launch overhead); ``None`` if unknown.
    """

    deadline_s: float
    price_per_gpu_second: float
    limits: ClusterLimits
    min_marginal_speedup: float
    drift_tolerance: float
    planned: Workload | None = None

    def __post_init__(self) -> None:
        if not self.drift_tolerance > 0:
            raise ValueError(
                f"drift_tolerance={self.drift_tolerance!r} must be a positive fraction "
                "(math.inf: re-plan only when the deadline or budget is at risk)."
            )


@dataclass(frozen=True)
class Standing:
    """Where the run stands after rung ``done``.

    Attributes:
        done: Index of the rung just finished (not the last one).
        alive: Trials still in play.
        elapsed_s: Seconds since the run started.
        left_dollars: Dollars left of the budget.
        epoch_seconds: Measured seconds per epoch in rung ``done`` (``None``: not measured).
        startup_seconds: Measured seconds per launch outside its epochs in rung ``done``.
    """

    done: int
    alive: int
    elapsed_s: float
    left_dollars: float
    epoch_seconds: float | None
    startup_seconds: float | None


@dataclass(frozen=True)
class Replan:
    """The rungs to run: those done unchanged, the rest re-timed or re-planned.

    Attributes:
        rungs: The whole schedule.
        note: What changed and why; ``""`` when the plan was kept as it was.
        revised: The rest was re-planned (workers per trial or survivors may differ), so the
            trials' placements must be written again.
    """

    rungs: tuple[Rung, ...]
    note: str
    revised: bool

    @property
    def workers(self) -> list[int]:
        """Workers per trial in every rung of the schedule."""
        return [r.gpus_per_trial for r in self.rungs]


def replan(rungs: Sequence[Rung], standing: Standing, measured: Workload, policy: Policy) -> Replan:
    """Re-time (and if needed re-plan) the rungs after ``standing.done`` from ``measured``.

    Raises:
        ValueError: ``standing.done`` is not a rung before the last one, or no trial is alive.
    """
    done = standing.done
    if not 0 <= done < len(rungs) - 1:
        raise ValueError(
            f"standing.done={done!r} must index a rung before the last of {len(rungs)}."
        )
    if standing.alive < 1:
        raise ValueError(f"standing.alive={standing.alive!r}: there is nothing to re-plan.")
    rest = rungs[done + 1 :]
    elapsed = standing.elapsed_s
    left_s = policy.deadline_s - elapsed
    left_dollars = standing.left_dollars
    price, limits = policy.price_per_gpu_second, policy.limits
    start = rungs[done].resource

    def timed(n: Sequence[int], gpus: Sequence[int]) -> tuple[Rung, ...]:
        shapes = [RungShape(a, r.resource, k) for a, r, k in zip(n, rest, gpus)]
        return schedule(shapes, measured, price, limits, start)

    def shifted(timed_rungs: Sequence[Rung]) -> tuple[Rung, ...]:
        return tuple(
            replace(r, index=done + 1 + i, start_s=r.start_s + elapsed, end_s=r.end_s + elapsed)
            for i, r in enumerate(timed_rungs)
        )

    n_now = [min(r.n_trials, standing.alive) for r in rest]
    current = timed(n_now, [r.gpus_per_trial for r in rest])
    fits = current[-1].end_s <= left_s and sum(r.cost for r in current) <= left_dollars
    planned_epoch = rungs[done].epoch_seconds
    measured_epoch = standing.epoch_seconds
    # The plan's start-up at the rung's concurrency: launches at once slow each other's too.
    planned = policy.planned
    planned_start = (
        planned.startup_seconds * planned.contention_on(rungs[done].concurrent_trials)
        if planned
        else 0.0
    )
    measured_start = standing.startup_seconds or 0.0
    tolerance = policy.drift_tolerance
    drift = (
        measured_epoch is not None
        and abs(measured_epoch - planned_epoch) > tolerance * planned_epoch
    ) or (planned_start > 0 and abs(measured_start - planned_start) > tolerance * planned_start)
    if fits and not drift:
        return Replan(rungs=(*rungs[: done + 1], *shifted(current)), note="", revised=False)
    why = (
        f"measured {measured_epoch if measured_epoch is not None else math.nan:.2f} s/epoch "
        f"on {rungs[done].gpus_per_trial} worker(s) (plan {planned_epoch:.2f}) and "
        f"{measured_start:.1f} s per launch (plan {planned_start:.1f})"
    )
    candidates = gpu_candidates(measured, limits, policy.min_marginal_speedup)
    chosen: tuple[Rung, ...] | None = None
    outcome = ""
    for width in range(n_now[0], 0, -1):
        n = [min(x, width) for x in n_now]
        found = assign_gpus(
            n,
            [r.resource for r in rest],
            measured,
            price,
            limits,
            left_s,
            candidates,
            start_resource=start,
        )
        if found is not None and sum(r.cost for r in found) <= left_dollars:
            chosen = found
            if width < n_now[0]:
                outcome = f"; only {width} survivor(s) can finish in time and budget"
            break
    if chosen is None:
        chosen = timed([1] * len(rest), [max(candidates)] * len(rest))
        outcome = (
            "; even one finalist cannot finish: it trains on the fastest workers and is "
            "stopped before the deadline"
        )
    new = shifted(chosen)
    old_gpus = [r.gpus_per_trial for r in rest]
    new_gpus = [r.gpus_per_trial for r in new]
    deadline = format_seconds(policy.deadline_s)
    if fits and new_gpus == old_gpus and [r.n_trials for r in new] == n_now:
        note = (
            f"re-timed after rung {done}: {why}; the remaining rungs still fit "
            f"(end {format_seconds(new[-1].end_s)} of {deadline})"
        )
    else:
        note = (
            f"re-plan after rung {done}: {why}{outcome}; workers per trial {old_gpus} -> "
            f"{new_gpus}, trials {[r.n_trials for r in rest]} -> "
            f"{[r.n_trials for r in new]}, predicted end {format_seconds(new[-1].end_s)} "
            f"of {deadline} with {format_seconds(left_s)} and ${left_dollars:,.2f} left"
        )
    return Replan(rungs=(*rungs[: done + 1], *new), note=note, revised=True)
