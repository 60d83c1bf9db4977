"""Plans that hold at p95: plan_seer with the profile's straggler spread, checked against the
simulator (an independent Monte Carlo of the same model) and against the mean-time plan."""

from __future__ import annotations

import math
import re

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from optuna_seer import Budget, ClusterLimits, InfeasiblePlanError, Plan, Workload, plan_seer
from optuna_seer.planning.cost_model import RungShape, schedule
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.simulator import SimulationResult, simulate
from optuna_seer.planning.stage_plan import ElasticPlan
from optuna_seer.planning.stragglers import StragglerModel, max_of_normals

BUDGET = Budget(deadline=1800.0, dollars=24.0, price_per_gpu_hour=3.0)
WORKLOAD = Workload(epoch_seconds=60.0, scaling="babi", max_epochs=40, startup_seconds=30.0)


def _simulated(plan: Plan, workload: Workload, cv: float) -> SimulationResult:
    quote = PriceQuote("slot", "gpu", 1, plan.price_per_gpu_second * 3600.0)
    profile = Profile.from_workload(workload, epoch_cv=cv)
    return simulate(ElasticPlan.from_seer(plan, quote), profile, samples=4000, seed=7)


def test_mean_time_plan_breaks_the_budget_at_p95_and_the_p95_plan_does_not() -> None:
    mean_plan = plan_seer(BUDGET, WORKLOAD, max_configs=150)
    p95_plan = plan_seer(BUDGET, WORKLOAD, max_configs=150, epoch_cv=0.1)
    mean_run, p95_run = _simulated(mean_plan, WORKLOAD, 0.1), _simulated(p95_plan, WORKLOAD, 0.1)
    assert mean_run.cost_p95 > BUDGET.dollars * 1.05  # the 4-13 % overspend
    # The simulator draws other numbers than the planner: allow its Monte Carlo error.
    assert p95_run.cost_p95 <= BUDGET.dollars * 1.005
    assert p95_run.jct_p95 <= BUDGET.deadline_seconds * 1.005
    assert p95_plan.n_configs < mean_plan.n_configs  # the margin is paid in breadth
    assert p95_plan.predicted_cost < BUDGET.dollars * 0.95


def test_zero_spread_is_todays_plan() -> None:
    assert plan_seer(BUDGET, WORKLOAD, max_configs=150, epoch_cv=0.0) == plan_seer(
        BUDGET, WORKLOAD, max_configs=150
    )
    assert plan_seer(BUDGET, WORKLOAD, max_configs=150, epoch_cv={1: 0.0, 4: 0.0}) == plan_seer(
        BUDGET, WORKLOAD, max_configs=150
    )


def test_model_quantiles_match_the_simulator_with_waves() -> None:
    workload = Workload(epoch_seconds=100.0, scaling="amdahl:0.9", max_epochs=9)
    limits = ClusterLimits(max_gpus=8)
    shapes = [RungShape(100, 1, 1), RungShape(11, 3, 2), RungShape(3, 9, 4)]
    rungs = schedule(shapes, workload, 0.001, limits)
    seconds, dollars = StragglerModel(0.2, quantile=0.9, samples=4000).quantiles(rungs, workload)
    quote = PriceQuote("slot", "gpu", 1, 3.6)
    stages = ElasticPlan.from_seer(Plan(rungs, 3, 1e6, 1e6, 0.001, 0.2), quote)
    result = simulate(stages, Profile.from_workload(workload, epoch_cv=0.2), samples=4000)
    assert rungs[0].waves == 13  # past EXACT_WAVES: the waves' sum is drawn as a normal
    assert seconds == pytest.approx(result.jct_quantile(0.9), rel=0.01)
    assert dollars == pytest.approx(result.cost_quantile(0.9), rel=0.01)
    assert dollars > sum(r.cost for r in rungs)


@settings(max_examples=30, deadline=None)
@given(
    cv=st.floats(0.01, 0.5),
    eta=st.integers(2, 4),
    quantile=st.sampled_from([0.5, 0.9, 0.95, 0.99]),
    dollars=st.floats(10.0, 200.0),
)
def test_p95_plans_hold_their_own_quantile(
    cv: float, eta: int, quantile: float, dollars: float
) -> None:
    budget = Budget(deadline=3600.0, dollars=dollars, price_per_gpu_hour=3.0)
    try:
        plan = plan_seer(budget, WORKLOAD, eta, max_configs=300, epoch_cv=cv, quantile=quantile)
    except InfeasiblePlanError as exc:
        assert exc.min_dollars is None or exc.min_dollars > dollars
        return
    seconds, cost = StragglerModel(cv, quantile).quantiles(plan.rungs, WORKLOAD)
    assert seconds <= budget.deadline_seconds + 1e-6
    assert cost <= dollars + 1e-9
    assert plan.predicted_cost <= cost + 1e-9


def test_more_spread_never_widens_the_plan() -> None:
    widths = [
        plan_seer(BUDGET, WORKLOAD, max_configs=150, epoch_cv=cv).n_configs
        for cv in (0.0, 0.05, 0.1, 0.2, 0.4)
    ]
    assert widths == sorted(widths, reverse=True)
    assert widths[-1] < widths[0]


def test_infeasible_at_p95_names_what_would_work_at_p95() -> None:
    # One full training costs $2.02 at mean times; with a wide spread more at p95.
    tight = Budget(deadline=7200.0, dollars=2.05, price_per_gpu_hour=3.0)
    plan_seer(tight, WORKLOAD, max_configs=1)
    with pytest.raises(InfeasiblePlanError) as caught:
        plan_seer(tight, WORKLOAD, max_configs=1, epoch_cv=0.5)
    assert caught.value.min_deadline_s is None
    assert "cheapest full training" in str(caught.value)


def test_max_of_normals_is_exact() -> None:
    u = np.random.default_rng(0).random(200_000)
    draws = max_of_normals(u, 50)
    direct = np.random.default_rng(1).standard_normal((20_000, 50)).max(axis=1)
    assert float(draws.mean()) == pytest.approx(float(direct.mean()), abs=0.01)
    assert float(np.quantile(draws, 0.95)) == pytest.approx(
        float(np.quantile(direct, 0.95)), abs=0.03
    )


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"epoch_cv": -0.1}, "must lie in [0, 10]"),
        ({"epoch_cv": math.nan}, "must lie in [0, 10]"),
        ({"epoch_cv": {0: 0.1}}, "worker count >= 1"),
        ({"epoch_cv": {}}, "is empty"),
        ({"epoch_cv": 0.1, "quantile": 1.0}, "must lie in [0.5, 1)"),
        ({"epoch_cv": 0.1, "quantile": 0.2}, "must lie in [0.5, 1)"),
    ],
)
def test_plan_seer_refuses_bad_spread(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)):
        plan_seer(BUDGET, WORKLOAD, **kwargs)  # type: ignore[arg-type]


def test_per_launch_billing_pays_only_the_trials_own_deviations() -> None:
    budget = Budget(deadline=7200.0, dollars=24.0, price_per_gpu_hour=3.0)
    workload = Workload(epoch_seconds=60.0, scaling="resnet50", max_epochs=40, startup_seconds=30)
    held = plan_seer(budget, workload, max_configs=150, epoch_cv=0.1)
    launch = plan_seer(budget, workload, max_configs=150, epoch_cv=0.1, billing="per-launch")
    mean = plan_seer(budget, workload, max_configs=150)
    assert held.n_configs < launch.n_configs < mean.n_configs
    seconds, dollars = StragglerModel(0.1, billing="per-launch").quantiles(launch.rungs, workload)
    assert seconds <= 7200.0 and launch.predicted_cost < dollars <= 24.0
    # Per launch: the sum of 97 + 33 + 11 + 4 trials' deviations, sd about $0.10.
    assert dollars - launch.predicted_cost == pytest.approx(1.645 * 0.0975, rel=0.15)
    with pytest.raises(ValueError, match="billing='monthly' must be one of"):
        plan_seer(budget, workload, epoch_cv=0.1, billing="monthly")
