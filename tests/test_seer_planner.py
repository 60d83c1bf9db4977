"""The SEER planner: properties over random inputs, the worked example, infeasibility."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import pytest

from optuna_seer import Budget, ClusterLimits, InfeasiblePlanError, Plan, Workload, plan_seer
from optuna_seer.planning.cost_model import RungShape, schedule
from optuna_seer.planning.seer import gpu_candidates, rung_resources

SCALINGS = st.sampled_from(
    ["linear", "amdahl:0.95", "amdahl:0.8", "power:0.6", "imagenet-resnet50", "babi", "resnet50"]
)


@st.composite
def problems(draw: st.DrawFn) -> tuple[Budget, Workload, int, ClusterLimits, float]:
    workload = Workload(
        epoch_seconds=draw(st.floats(5.0, 3600.0)),
        scaling=draw(SCALINGS),
        max_epochs=draw(st.integers(1, 100)),
        gpus_per_node=draw(st.sampled_from([1, 4, 8])),
        startup_seconds=draw(st.floats(0.0, 120.0)),
    )
    budget = Budget(
        deadline=draw(st.floats(600.0, 3 * 86400.0)),
        dollars=draw(st.floats(1.0, 20_000.0)),
        price_per_gpu_hour=draw(st.floats(0.1, 10.0)),
    )
    limits = ClusterLimits(
        max_gpus=draw(st.one_of(st.none(), st.integers(1, 256))),
        provisioning_seconds=draw(st.floats(0.0, 300.0)),
    )
    return budget, workload, draw(st.integers(2, 5)), limits, draw(st.floats(0.05, 0.9))


def _check_invariants(
    plan: Plan,
    budget: Budget,
    workload: Workload,
    eta: int,
    limits: ClusterLimits,
    threshold: float,
) -> None:
    assert plan.predicted_seconds <= budget.deadline_seconds + 1e-6
    assert plan.predicted_cost <= budget.dollars + 1e-9
    assert plan.max_epochs == workload.max_epochs
    chain = gpu_candidates(workload, limits, threshold)
    for before, after in zip(plan.rungs, plan.rungs[1:]):
        if after is plan.rungs[-1]:  # the finalists: at least 1/η, and what is left may add
            assert math.ceil(before.n_trials / eta) <= after.n_trials <= before.n_trials
        else:
            assert after.n_trials == math.ceil(before.n_trials / eta)  # shrink by η
        assert after.gpus_per_trial >= before.gpus_per_trial  # never decrease
        assert after.resource > before.resource
        assert after.start_s == pytest.approx(before.end_s)
    for rung in plan.rungs:
        k = rung.gpus_per_trial
        assert k in chain
        if k > 1:  # the step into k adds at least the plan's threshold per extra GPU
            previous = chain[chain.index(k) - 1]
            gain = workload.curve.speedup(k) - workload.curve.speedup(previous)
            assert gain / (k - previous) >= plan.min_marginal_speedup - 1e-12
        assert k <= workload.curve.max_useful_gpus
        if limits.max_gpus is not None:
            assert rung.gpus <= limits.max_gpus
    assert plan.rungs[-1].n_trials >= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_plan_invariants(problem: tuple[Budget, Workload, int, ClusterLimits, float]) -> None:
    budget, workload, eta, limits, threshold = problem
    try:
        plan = plan_seer(
            budget, workload, eta, limits=limits, min_marginal_speedup=threshold, max_configs=2000
        )
    except InfeasiblePlanError as error:
        # The advice is real: the suggested deadline (at this budget) does produce a plan.
        if error.min_deadline_s is not None:
            relaxed = Budget(
                deadline=error.min_deadline_s + 1e-6,
                dollars=budget.dollars,
                price_per_gpu_hour=budget.price_per_gpu_hour,
            )
            plan_seer(
                relaxed,
                workload,
                eta,
                limits=limits,
                min_marginal_speedup=threshold,
                max_configs=2000,
            )
        if error.min_dollars is not None:
            richer = Budget(
                deadline=budget.deadline,
                dollars=error.min_dollars * (1 + 1e-9),
                price_per_gpu_hour=budget.price_per_gpu_hour,
            )
            plan_seer(
                richer,
                workload,
                eta,
                limits=limits,
                min_marginal_speedup=threshold,
                max_configs=2000,
            )
        return
    _check_invariants(plan, budget, workload, eta, limits, threshold)
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


@settings(max_examples=40, deadline=None)
@given(problems())
def test_more_money_never_narrows_the_search(
    problem: tuple[Budget, Workload, int, ClusterLimits, float],
) -> None:
    budget, workload, eta, limits, threshold = problem
    try:
        plan = plan_seer(
            budget, workload, eta, limits=limits, min_marginal_speedup=threshold, max_configs=500
        )
    except InfeasiblePlanError:
        return
    richer = Budget(
        deadline=budget.deadline,
        dollars=budget.dollars * 2,
        price_per_gpu_hour=budget.price_per_gpu_hour,
    )
    wider = plan_seer(
        richer, workload, eta, limits=limits, min_marginal_speedup=threshold, max_configs=500
    )
    assert wider.n_configs >= plan.n_configs


def test_worked_example_from_docs() -> None:
    """docs/planning.md reproduces this plan by hand; keep the two in step."""
    plan = plan_seer(
        Budget(deadline="1h", dollars=30, price_per_gpu_hour=3.0),
        Workload(
            epoch_seconds=600, scaling={1: 1.0, 2: 1.8, 4: 3.0}, max_epochs=9, gpus_per_node=4
        ),
        reduction_factor=3,
        limits=ClusterLimits(max_gpus=8),
    )
    assert [(r.n_trials, r.resource, r.gpus_per_trial) for r in plan.rungs] == [
        (16, 1, 1),
        (6, 3, 1),
        (2, 9, 4),
    ]
    assert [r.waves for r in plan.rungs] == [2, 1, 1]
    assert plan.predicted_seconds == pytest.approx(1200 + 1200 + 1200)
    assert plan.predicted_cost == pytest.approx((8 * 1200 + 6 * 1200 + 8 * 1200) * 3.0 / 3600)
    assert plan.predicted_cost == pytest.approx(22.0)


def test_wide_and_cheap_early_more_gpus_late() -> None:
    plan = plan_seer(
        Budget(deadline="3h", dollars=2000, price_per_gpu_hour=3.0),
        Workload(epoch_seconds=600, scaling="amdahl:0.95", max_epochs=40, gpus_per_node=8),
        reduction_factor=3,
    )
    assert plan.rungs[0].gpus_per_trial == 1
    assert plan.rungs[-1].gpus_per_trial > 1
    assert plan.n_configs > 27


def test_planner_never_buys_past_the_peak() -> None:
    plan = plan_seer(
        Budget(deadline="30m", dollars=10_000, price_per_gpu_hour=3.0),
        Workload(epoch_seconds=300, scaling="babi", max_epochs=10, gpus_per_node=8),
        min_marginal_speedup=0.05,
    )
    assert max(r.gpus_per_trial for r in plan.rungs) <= 8


def test_schedule_closed_form_with_waves_and_provisioning() -> None:
    workload = Workload(epoch_seconds=100.0, scaling="linear", max_epochs=4, startup_seconds=5.0)
    rungs = schedule(
        [RungShape(5, 1, 1), RungShape(2, 4, 2)],
        workload,
        0.01,
        ClusterLimits(max_gpus=4, provisioning_seconds=30.0),
    )
    assert (rungs[0].concurrent_trials, rungs[0].waves) == (4, 2)
    assert rungs[0].end_s == pytest.approx(30 + 2 * (5 + 100))
    # Rung 1 uses 2 trials × 2 GPUs = 4 GPUs, the same as rung 0: no new provisioning delay.
    assert rungs[1].end_s - rungs[1].start_s == pytest.approx(5 + 3 * 50)
    assert rungs[1].cost == pytest.approx(4 * 155 * 0.01)


def test_infeasible_names_smallest_deadline_and_budget() -> None:
    workload = Workload(epoch_seconds=600, scaling="amdahl:0.95", max_epochs=40)
    with pytest.raises(InfeasiblePlanError) as caught:
        plan_seer(Budget(deadline="10m", dollars=100, price_per_gpu_hour=3.0), workload)
    message = str(caught.value)
    assert "0:10:00" in message and "smallest deadline that works is 0:31:53" in message
    assert caught.value.min_deadline_s is not None
    plan = plan_seer(
        Budget(deadline=caught.value.min_deadline_s, dollars=100, price_per_gpu_hour=3.0), workload
    )
    assert plan.n_configs >= 1


def test_infeasible_budget_too_small_for_any_training() -> None:
    workload = Workload(epoch_seconds=3600, scaling="linear", max_epochs=10)
    with pytest.raises(InfeasiblePlanError, match=r"below the cheapest full training \(\$30"):
        plan_seer(Budget(deadline="100h", dollars=1, price_per_gpu_hour=3.0), workload)


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"reduction_factor": 1}, ValueError, "reduction_factor=1"),
        ({"reduction_factor": 2.5}, TypeError, "reduction_factor=2.5"),
        ({"min_resource": 0}, ValueError, "min_resource=0"),
        ({"min_resource": 50}, ValueError, "exceeds max_epochs=10"),
        ({"min_marginal_speedup": 0.0}, ValueError, "min_marginal_speedup=0.0"),
        ({"max_configs": 0}, ValueError, "max_configs=0"),
    ],
)
def test_plan_seer_rejects(kwargs: dict[str, object], error: type[Exception], needle: str) -> None:
    with pytest.raises(error, match=needle):
        plan_seer(
            Budget(deadline="1h", dollars=10, price_per_gpu_hour=1.0),
            Workload(epoch_seconds=10, scaling="linear", max_epochs=10),
            **kwargs,
        )  # type: ignore[arg-type]


def test_plan_seer_rejects_wrong_types() -> None:
    with pytest.raises(TypeError, match="budget="):
        plan_seer("12h", Workload(epoch_seconds=10, scaling="linear", max_epochs=10))  # type: ignore[arg-type]


def test_rung_resources() -> None:
    assert rung_resources(40, 3, 4, 1) == (1, 4, 13, 40)
    assert rung_resources(27, 3, 4, 1) == (1, 3, 9, 27)
    assert rung_resources(2, 3, 3, 1) is None
    assert rung_resources(9, 3, 3, 2) is None


def test_plan_table_and_json() -> None:
    plan = plan_seer(
        Budget(deadline="12h", dollars=400, price_per_gpu_hour=3.0),
        Workload(epoch_seconds=600, scaling="amdahl:0.95", max_epochs=40),
    )
    text = str(plan)
    assert "rung" in text and "GPUs/trial" in text and f"{plan.n_configs} configurations" in text
    with pytest.raises(ValueError, match="not a valid Plan dict"):
        Plan.from_dict({"rungs": [{"index": 0}]})


def test_plan_json_as_earlier_versions_wrote_it() -> None:
    """A plan file written before rungs shared one shape type (and before they recorded their
    start-up) loads, and is written alike."""
    rung = {"start_s": 0.0, "cost": 1.0, "epoch_seconds": 60.0, "waves": 1}
    written = {
        "rungs": [
            {"index": 0, "n_trials": 4, "resource": 1, "gpus_per_trial": 1, **rung}
            | {"end_s": 60.0, "concurrent_trials": 4},
            {"index": 1, "n_trials": 1, "resource": 3, "gpus_per_trial": 2, **rung}
            | {"start_s": 60.0, "end_s": 120.0, "concurrent_trials": 1},
        ],
        "reduction_factor": 4,
        "deadline_s": 3600.0,
        "budget_dollars": 10.0,
        "price_per_gpu_second": 0.001,
        "min_marginal_speedup": 0.05,
        "predicted_seconds": 120.0,
        "predicted_cost": 2.0,
    }
    plan = Plan.from_dict(written)
    assert [(r.index, r.n_trials, r.resource, r.gpus_per_trial) for r in plan.rungs] == [
        (0, 4, 1, 1),
        (1, 1, 3, 2),
    ]
    # Written alike, with the start-up it lacked (0: the plan timed none) after the old keys.
    assert plan.to_dict() == written | {"rungs": [r | {"startup_s": 0.0} for r in written["rungs"]]}
    keys = "index n_trials resource gpus_per_trial start_s end_s cost epoch_seconds"
    assert [list(r) for r in plan.to_dict()["rungs"]] == [
        [*keys.split(), "concurrent_trials", "waves", "startup_s"]
    ] * 2
    assert [r.shape for r in plan.rungs] == [RungShape(4, 1, 1), RungShape(1, 3, 2)]
