"""SEER's plans give what the widest search leaves of the deadline and the budget to more
finalists (``plan_seer``, step 4): on a fixed pool the workers the last rung would leave idle,
on an elastic cluster the budget left over; never beyond what the rung before kept, never in
more waves, and at the stragglers' quantile where the plan holds at one."""

from __future__ import annotations

import math

import pytest

from optuna_seer import Budget, ClusterLimits, SeerPruner, Workload, plan_seer
from optuna_seer.planning.cost_model import RungShape, schedule
from optuna_seer.planning.plan import Plan, Rung
from optuna_seer.planning.stragglers import StragglerModel

WORK = Workload(epoch_seconds=60, scaling="babi", max_epochs=40, startup_seconds=30)
BUDGET = Budget(deadline=1800, dollars=24, price_per_gpu_hour=3.0)
POOL = ClusterLimits(max_gpus=16)


def _with_last(plan: Plan, n_last: int, limits: ClusterLimits) -> tuple[Rung, ...]:
    """The plan's rungs re-timed with ``n_last`` trials in the last rung."""
    *before, last = plan.rungs
    shapes = [RungShape(r.n_trials, r.resource, r.gpus_per_trial) for r in before]
    shapes.append(RungShape(n_last, last.resource, last.gpus_per_trial))
    return schedule(shapes, WORK, plan.price_per_gpu_second, limits)


def _eta_last(plan: Plan) -> int:
    """The last rung's trials as ``η`` alone keeps them."""
    return math.ceil(plan.rungs[-2].n_trials / plan.reduction_factor)


def test_a_pools_idle_last_rung_workers_train_more_finalists() -> None:
    plan = plan_seer(BUDGET, WORK, limits=POOL, max_configs=150)
    assert [r.n_trials for r in plan.rungs] == [48, 16, 6, 4]  # η alone keeps 2 of 6
    last = plan.rungs[-1]
    assert last.gpus_per_trial == 4 and last.waves == 1  # 4 finalists x 4 workers: the pool
    eta_only = _with_last(plan, _eta_last(plan), POOL)
    assert plan.predicted_seconds == pytest.approx(eta_only[-1].end_s)  # the end does not move
    assert sum(r.cost for r in eta_only) < plan.predicted_cost <= BUDGET.dollars


def test_the_budget_left_on_an_elastic_cluster_trains_a_finalist_more_at_p95() -> None:
    # The benchmark's 30-minute cell: the widest search leaves about $2.60 of $24.
    stragglers = StragglerModel(0.1, 0.95, billing="per-launch")
    plan = plan_seer(BUDGET, WORK, max_configs=150, epoch_cv=0.1, billing="per-launch")
    assert [r.n_trials for r in plan.rungs] == [81, 27, 9, 4]  # η alone keeps 3 of 9
    seconds, dollars = stragglers.quantiles(plan.rungs, WORK)
    assert seconds <= BUDGET.deadline_seconds and dollars <= BUDGET.dollars
    one_more = _with_last(plan, 5, ClusterLimits())
    assert stragglers.quantiles(one_more, WORK)[1] > BUDGET.dollars  # a fifth is over at p95


def test_the_budget_caps_the_extra_finalists() -> None:
    plan = plan_seer(BUDGET, WORK, limits=POOL, max_configs=150)
    eta_cost = sum(r.cost for r in _with_last(plan, _eta_last(plan), POOL))
    finalist = plan.rungs[-1].cost / plan.rungs[-1].n_trials
    for dollars, n_last in ((eta_cost + 0.01, 2), (eta_cost + 1.5 * finalist, 3)):
        budget = Budget(deadline=1800, dollars=dollars, price_per_gpu_hour=3.0)
        capped = plan_seer(budget, WORK, limits=POOL, max_configs=150)
        assert [r.n_trials for r in capped.rungs] == [48, 16, 6, n_last]
        assert capped.predicted_cost <= dollars


def test_never_more_finalists_than_the_rung_before_kept() -> None:
    limits = ClusterLimits(max_gpus=64)
    plan = plan_seer(BUDGET, WORK, limits=limits, max_configs=150)
    assert plan.rungs[-1].n_trials <= plan.rungs[-2].n_trials
    assert plan.rungs[-1].n_trials * plan.rungs[-1].gpus_per_trial <= 64


def test_a_last_rung_in_waves_gets_no_wave_more() -> None:
    limits = ClusterLimits(max_gpus=2)
    budget = Budget(deadline="4h", dollars=24, price_per_gpu_hour=3.0)
    plan = plan_seer(budget, WORK, limits=limits, max_configs=150)
    assert plan.rungs[-1].waves > 1
    assert plan.rungs[-1].waves == _with_last(plan, _eta_last(plan), limits)[-1].waves
    assert plan.predicted_seconds <= budget.deadline_seconds


def test_the_pruner_plans_a_pool_with_its_finalists_filled() -> None:
    pruner = SeerPruner(BUDGET, WORK, limits=POOL, max_configs=150)
    assert pruner.plan == plan_seer(BUDGET, WORK, limits=POOL, max_configs=150)
    assert [r.n_trials for r in pruner.plan.rungs] == [48, 16, 6, 4]
