"""The cheapest RubberBand plan by exhaustive branch and bound: the yardstick the planner's
search (:func:`~optuna_seer.planning.rubberband.plan_rubberband`) is measured against on jobs
small enough to enumerate (``benchmarks/planner.py``, ``benchmarks/executed_plan_per_hour.py``).
"""

from __future__ import annotations

import numpy as np

from optuna_seer.planning.rubberband import _Search
from optuna_seer.planning.rubberband_problem import PlanningProblem
from optuna_seer.planning.simulator import PlanEvaluator, PlanStats, empirical_quantile
from optuna_seer.planning.stage_plan import ElasticPlan, Stage

__all__ = ["exhaustive_plan"]


def exhaustive_plan(
    problem: PlanningProblem, evaluator: PlanEvaluator | None = None
) -> tuple[ElasticPlan, PlanStats] | None:
    """The cheapest feasible plan over *all* per-stage options (unpruned), by branch and bound.

    Only for jobs small enough to enumerate: a yardstick for :func:`plan_rubberband`. Every
    stage may also take any other stage's cluster (so shared leases are enumerated too).
    Bounds: a stage costs at least its own nodes for its own work, and takes at least the
    elementwise-least work time of its options.
    """
    search = _Search(problem, evaluator)
    evaluator = search.evaluator
    rungs = search.rungs
    raw = [search.options(r, prune=False) for r in range(rungs)]
    clusters = {s.cluster for opts in raw for s in opts}
    options: list[list[Stage]] = []
    for r in range(rungs):
        merged = {(s.instance, s.gpus_per_trial, s.nodes): s for s in raw[r]}
        for cluster in clusters:
            extra = search.fastest_k(r, *cluster)
            if extra is not None:
                merged.setdefault((extra.instance, extra.gpus_per_trial, extra.nodes), extra)
        options.append(list(merged.values()))
    work: list[list[tuple[Stage, np.ndarray, float]]] = []
    previous = 0
    for r in range(rungs):
        rows = []
        for stage in options[r]:
            makespan, interrupted = evaluator.work_samples(r, stage, previous)
            seconds = makespan + interrupted
            rows.append(
                (
                    stage,
                    seconds,
                    float(seconds.mean()) * stage.nodes * stage.instance.dollars_per_second,
                )
            )
        rows.sort(key=lambda row: row[2])
        work.append(rows)
        previous = problem.job.resources[r]
    cost_tail = [sum(rows[0][2] for rows in work[r:]) for r in range(rungs)] + [0.0]
    least = [np.min(np.stack([row[1] for row in rows]), axis=0) for rows in work]
    time_tail = [np.sum(np.stack(least[r:]), axis=0) for r in range(rungs)]
    time_tail.append(np.zeros(problem.samples))
    best: tuple[ElasticPlan, PlanStats] | None = None

    def search_from(prefix: list[Stage], clock: np.ndarray, spent: float) -> None:
        nonlocal best
        r = len(prefix)
        if r == rungs:
            plan = ElasticPlan(tuple(prefix))
            stats = evaluator.stats(plan)
            if search.feasible(stats) and (best is None or stats.cost < best[1].cost):
                best = (plan, stats)
            return
        for stage, seconds, stage_cost in work[r]:
            if best is not None and spent + stage_cost + cost_tail[r + 1] >= best[1].cost:
                break  # rows are sorted by cost: every later one is dearer still.
            new_clock = clock + seconds
            if (
                empirical_quantile(new_clock + time_tail[r + 1], problem.quantile)
                > problem.deadline_s
            ):
                continue
            search_from([*prefix, stage], new_clock, spent + stage_cost)

    search_from([], np.zeros(problem.samples), 0.0)
    return best
