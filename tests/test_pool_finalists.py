"""On a fixed pool the last rung's idle workers train more finalists, within the plan's
deadline and budget and never beyond what the rung before kept."""

from __future__ import annotations

import dataclasses

import pytest

from optuna_seer import Budget, ClusterLimits, SeerPruner, Workload, plan_seer
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.pool_finalists import fill_last_rung

WORK = Workload(epoch_seconds=60, scaling="babi", max_epochs=40, startup_seconds=30)
BUDGET = Budget(deadline=1800, dollars=24, price_per_gpu_hour=3.0)
POOL = ClusterLimits(max_gpus=16)


def _plan(budget: Budget = BUDGET, limits: ClusterLimits = POOL) -> Plan:
    return plan_seer(budget, WORK, limits=limits, max_configs=150)


def test_idle_workers_of_the_last_rung_train_the_next_survivors() -> None:
    plan = _plan()
    last = plan.rungs[-1]
    assert last.n_trials * last.gpus_per_trial < 16  # workers idle through the last rung
    filled = fill_last_rung(plan, WORK, POOL)
    assert filled.rungs[:-1] == plan.rungs[:-1]  # the rungs before are untouched
    assert filled.rungs[-1].n_trials == 16 // last.gpus_per_trial > last.n_trials
    assert filled.rungs[-1].gpus_per_trial == last.gpus_per_trial
    assert filled.rungs[-1].waves == 1
    assert filled.predicted_seconds == pytest.approx(plan.predicted_seconds)
    assert filled.predicted_cost <= BUDGET.dollars
    assert filled.predicted_cost > plan.predicted_cost  # the extra finalists are paid for


def test_the_budget_caps_the_extra_finalists() -> None:
    plan = _plan()
    one_more = fill_last_rung(
        dataclasses.replace(plan, budget_dollars=plan.predicted_cost + 0.01), WORK, POOL
    )
    assert one_more.rungs == plan.rungs  # not even one more finalist is affordable
    finalist = (plan.rungs[-1].cost) / plan.rungs[-1].n_trials
    roomier = dataclasses.replace(plan, budget_dollars=plan.predicted_cost + 1.5 * finalist)
    assert fill_last_rung(roomier, WORK, POOL).rungs[-1].n_trials == plan.rungs[-1].n_trials + 1


def test_never_more_finalists_than_the_rung_before_kept() -> None:
    plan = _plan(limits=ClusterLimits(max_gpus=64))
    filled = fill_last_rung(plan, WORK, ClusterLimits(max_gpus=64))
    assert filled.rungs[-1].n_trials <= filled.rungs[-2].n_trials
    assert filled.rungs[-1].n_trials * filled.rungs[-1].gpus_per_trial <= 64


@pytest.mark.parametrize("limits", [ClusterLimits(), ClusterLimits(max_gpus=2)])
def test_without_a_pool_or_with_a_last_rung_in_waves_the_plan_is_kept(
    limits: ClusterLimits,
) -> None:
    budget = Budget(deadline="4h", dollars=24, price_per_gpu_hour=3.0)
    plan = plan_seer(budget, WORK, limits=limits, max_configs=150)
    assert limits.max_gpus is None or plan.rungs[-1].waves > 1
    assert fill_last_rung(plan, WORK, limits) is plan


def test_the_pruner_plans_a_pool_with_its_finalists_filled() -> None:
    pruner = SeerPruner(BUDGET, WORK, limits=POOL, max_configs=150)
    assert pruner.plan == fill_last_rung(_plan(), WORK, POOL)
    assert [r.n_trials for r in pruner.plan.rungs] == [48, 16, 6, 4]
