"""Finalists on a fixed pool: the last rung's idle workers train the next survivors too.

A study on a fixed pool of ``P`` workers (``study.optimize`` with SEER's pair on the workers
here, or on ``ClusterLimits(max_gpus=P)``) holds them for the whole deadline. SEER's plan
keeps ``1/η`` of the last-but-one rung's trials for the last rung; where those finalists
hold fewer than ``P`` workers between them, the rest of the pool idles through the plan's
longest rung. :func:`fill_last_rung` gives those workers to the next-ranked survivors of
the rung before, as many as still run in the last rung's one wave (so its end does not
move) within the deadline and the budget. The best of more finalists is chosen at the end:
a configuration ranked just below the cut after the last-but-one rung, often by one
validation example, still gets its full training.

:func:`~optuna_seer.planning.seer.plan_seer` itself keeps ``η``'s last width: where GPUs are
bought as they are used (the elastic executor on a cloud), idle ones cost nothing.
``docs/benchmarks.md`` measures the pool arm with and without.
"""

from __future__ import annotations

import dataclasses

from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.workload import Workload


def fill_last_rung(plan: Plan, workload: Workload, limits: ClusterLimits) -> Plan:
    """``plan`` with as many finalists as its last rung's one wave holds on ``limits``'s pool.

    The last rung grows one trial at a time, at its own workers per trial, while all its
    trials run at once on ``limits.max_gpus``, no more than the rung before kept run in it,
    and the plan still ends by its deadline within its budget (both as the plan predicts
    them). Without a pool (``limits.max_gpus`` unset), with one rung, or with a last rung
    already in more than one wave, ``plan`` is returned as it is.

    Args:
        plan: A plan for ``limits`` (e.g. :func:`optuna_seer.planning.seer.plan_seer`'s).
        workload: The workload the plan was made for (its epoch times and start-ups).
        limits: The pool.

    Example (a 30-minute deadline on 16 workers: 2 finalists hold 8 of them; 4 fit):
        >>> from optuna_seer.planning.budget import Budget
        >>> from optuna_seer.planning.seer import plan_seer
        >>> pool = ClusterLimits(max_gpus=16)
        >>> work = Workload(epoch_seconds=60, scaling="babi", max_epochs=40, startup_seconds=30)
        >>> plan = plan_seer(Budget(deadline=1800, dollars=24, price_per_gpu_hour=3.0), work,
        ...                  limits=pool, max_configs=150)
        >>> [r.n_trials for r in plan.rungs], plan.rungs[-1].gpus_per_trial
        ([48, 16, 6, 2], 4)
        >>> filled = fill_last_rung(plan, work, pool)
        >>> [r.n_trials for r in filled.rungs], filled.predicted_seconds == plan.predicted_seconds
        ([48, 16, 6, 4], True)
    """
    if limits.max_gpus is None or len(plan.rungs) < 2 or plan.rungs[-1].waves > 1:
        return plan
    *before, last = plan.rungs
    shapes = [RungShape(r.n_trials, r.resource, r.gpus_per_trial) for r in before]
    most = min(limits.max_gpus // last.gpus_per_trial, before[-1].n_trials)
    filled = plan
    for n_last in range(last.n_trials + 1, most + 1):
        rungs = schedule(
            [*shapes, RungShape(n_last, last.resource, last.gpus_per_trial)],
            workload,
            plan.price_per_gpu_second,
            limits,
        )
        candidate = dataclasses.replace(plan, rungs=rungs)
        if (
            rungs[-1].waves > 1
            or candidate.predicted_seconds > plan.deadline_s
            or candidate.predicted_cost > plan.budget_dollars
        ):
            break
        filled = candidate
    return filled
