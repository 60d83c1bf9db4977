"""The simulator: exact on the deterministic model, convergent and reproducible with noise."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.simulator import CloudModel, PlanEvaluator, simulate, used_gpu_seconds
from optuna_seer.planning.stage_plan import ElasticPlan, Stage, nodes_for
from optuna_seer.planning.workload import Workload

SCALINGS = ["linear", "amdahl:0.95", "power:0.6", "imagenet-resnet50", "babi"]


@st.composite
def deterministic_cases(draw: st.DrawFn) -> tuple[list[RungShape], Workload, float, ClusterLimits]:
    rungs = draw(st.integers(1, 5))
    n = draw(st.integers(1, 60))
    trials, resources, gpus = [], [], []
    resource = 0
    for _ in range(rungs):
        trials.append(n)
        resource += draw(st.integers(1, 10))
        resources.append(resource)
        gpus.append(draw(st.sampled_from([1, 2, 4, 8])))
        n = max(1, n // draw(st.integers(1, 4)))
    workload = Workload(
        epoch_seconds=draw(st.floats(1.0, 5000.0)),
        scaling=draw(st.sampled_from(SCALINGS)),
        max_epochs=resources[-1],
        startup_seconds=draw(st.floats(0.0, 300.0)),
        contention=draw(st.sampled_from([1.0, 1.6, {2: 1.3, 4: 2.0, 16: 3.5}])),
    )
    limits = ClusterLimits(
        max_gpus=draw(st.sampled_from([None, 8, 16, 64])),
        provisioning_seconds=draw(st.floats(0.0, 600.0)),
    )
    price = draw(st.floats(1e-4, 0.01))
    shapes = [RungShape(*t) for t in zip(trials, resources, gpus)]
    return shapes, workload, price, limits


@given(deterministic_cases())
@settings(max_examples=60, deadline=None)
def test_noise_free_simulation_reproduces_schedule(
    case: tuple[list[RungShape], Workload, float, ClusterLimits],
) -> None:
    shapes, workload, price, limits = case
    rungs = schedule(shapes, workload, price, limits)
    # One-GPU instances at the same price: nodes = GPUs, so cluster changes coincide with
    # schedule()'s "the number of GPUs changed".
    instance = PriceQuote("gpu", "V100", 1, price * 3600.0)
    plan = ElasticPlan(
        tuple(Stage(r.n_trials, r.resource, r.gpus_per_trial, instance, r.gpus) for r in rungs)
    )
    result = simulate(
        plan, Profile.from_workload(workload), CloudModel.from_limits(limits), samples=3, seed=1
    )
    for value in result.jct:
        assert value == pytest.approx(rungs[-1].end_s, rel=1e-12)
    assert result.cost_mean == pytest.approx(sum(r.cost for r in rungs), rel=1e-12)
    assert result.stage_start_s == pytest.approx([r.start_s for r in rungs], rel=1e-12)
    assert result.stage_end_s == pytest.approx([r.end_s for r in rungs], rel=1e-12)


def _single_trial_plan(draw: st.DrawFn) -> tuple[ElasticPlan, Profile, float]:
    instance = PriceQuote("gpu", "V100", 1, 3.0)
    stages = []
    resource = 0
    for _ in range(draw(st.integers(1, 4))):
        resource += draw(st.integers(1, 6))
        k = draw(st.sampled_from([1, 2, 4]))
        stages.append(Stage(1, resource, k, instance, k))
    profile = Profile(
        epoch_seconds=draw(st.floats(10.0, 1000.0)),
        scaling=draw(st.sampled_from(SCALINGS)),
        epoch_cv=draw(st.floats(0.01, 0.5)),
        startup_seconds=draw(st.floats(0.0, 100.0)),
    )
    closed = sum(
        profile.startup_on(s.gpus_per_trial)
        + (s.resource - (stages[i - 1].resource if i else 0))
        * profile.epoch_seconds_on(s.gpus_per_trial)
        for i, s in enumerate(stages)
    )
    return ElasticPlan(tuple(stages)), profile, closed


@given(st.data())
@settings(max_examples=25, deadline=None)
def test_noisy_mean_converges_to_the_closed_form(data: st.DataObject) -> None:
    """One trial per stage has no max: E[JCT] is the sum of means; the Monte Carlo mean is
    within 5 standard errors of it."""
    plan, profile, closed = _single_trial_plan(data.draw)
    samples = 4000
    result = simulate(plan, profile, samples=samples, seed=data.draw(st.integers(0, 10**6)))
    error = float(np.std(result.jct)) / math.sqrt(samples)
    assert abs(result.jct_mean - closed) <= 5 * error + 1e-9 * closed


def test_error_shrinks_with_samples() -> None:
    instance = PriceQuote("gpu", "V100", 1, 3.0)
    plan = ElasticPlan((Stage(27, 1, 1, instance, 9), Stage(9, 3, 2, instance, 18)))
    profile = Profile(epoch_seconds=100.0, scaling="amdahl:0.9", epoch_cv=0.2)
    reference = simulate(plan, profile, samples=100_000, seed=99).jct_mean
    errors = [
        np.mean(
            [abs(simulate(plan, profile, samples=n, seed=s).jct_mean - reference) for s in range(8)]
        )
        for n in (50, 5000)
    ]
    assert errors[1] < errors[0] / 3
    # Stragglers only slow a synchronous rung down.
    deterministic = simulate(plan, Profile(epoch_seconds=100.0, scaling="amdahl:0.9")).jct_mean
    assert reference > deterministic


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    instance = PriceQuote("gpu", "V100", 1, 3.0)
    plan = ElasticPlan((Stage(9, 1, 1, instance, 9), Stage(3, 3, 1, instance, 3)))
    profile = Profile(epoch_seconds=60.0, scaling="linear", epoch_cv=0.1)
    cloud = CloudModel(queue_seconds=30, boot_seconds=60, provisioning_cv=0.5)
    first = simulate(plan, profile, cloud, samples=200, seed=3)
    assert simulate(plan, profile, cloud, samples=200, seed=3) == first
    assert simulate(plan, profile, cloud, samples=200, seed=4).jct != first.jct


def test_billing_granularity_and_leases() -> None:
    instance = PriceQuote("gpu", "V100", 1, 3.6)  # $0.001 per second
    profile = Profile(epoch_seconds=100.0, scaling="linear")
    one_lease = ElasticPlan((Stage(2, 1, 1, instance, 2), Stage(1, 2, 2, instance, 2)))
    two_leases = ElasticPlan((Stage(2, 1, 1, instance, 2), Stage(1, 2, 1, instance, 1)))
    exact = CloudModel()
    hourly = CloudModel(billing="per-hour")
    assert simulate(one_lease, profile, exact, samples=1).cost_mean == pytest.approx(0.3)
    # One lease of 150 s on 2 nodes: two node-hours.
    assert simulate(one_lease, profile, hourly, samples=1).cost_mean == pytest.approx(7.2)
    # Per cluster: two leases, 2 node-hours, then 1 node-hour.
    clusters = CloudModel(billing="per-hour", node_leases=False)
    assert simulate(two_leases, profile, clusters, samples=1).cost_mean == pytest.approx(10.8)
    # Per node (the default per hour): the shrink keeps one node, which is 200 s old at the
    # end, and releases the other at 100 s: one hour each.
    assert hourly.per_node_leases and not CloudModel(billing="per-second").per_node_leases
    assert simulate(two_leases, profile, hourly, samples=1).cost_mean == pytest.approx(7.2)


def test_provisioning_only_when_the_cluster_changes() -> None:
    instance = PriceQuote("gpu", "V100", 1, 3.6)
    profile = Profile(epoch_seconds=100.0, scaling="linear")
    cloud = CloudModel(queue_seconds=50.0, boot_seconds=20.0)
    kept = ElasticPlan((Stage(2, 1, 1, instance, 2), Stage(1, 2, 2, instance, 2)))
    shrunk = ElasticPlan((Stage(2, 1, 1, instance, 2), Stage(1, 2, 1, instance, 1)))
    assert simulate(kept, profile, cloud, samples=1).jct_mean == pytest.approx(70 + 100 + 50)
    result = simulate(shrunk, profile, cloud, samples=1)
    assert result.jct_mean == pytest.approx(70 + 100 + 70 + 100)
    # Queueing is not billed, boot is: 2 × (20 + 100) + 1 × (20 + 100) node-seconds.
    assert result.cost_mean == pytest.approx(0.001 * 360)


def test_checkpoint_transfer_and_storage_cost() -> None:
    instance = PriceQuote("gpu", "V100", 1, 0.0)
    profile = Profile(epoch_seconds=100.0, scaling="linear", checkpoint_gb=2.0)
    plan = ElasticPlan((Stage(4, 1, 1, instance, 4), Stage(2, 2, 1, instance, 2)))
    cloud = CloudModel(transfer_dollars_per_gb=0.01, storage_dollars_per_gb_month=0.023)
    result = simulate(plan, profile, cloud, samples=1)
    storage = 4 * 2.0 * 0.023 * 200.0 / (30 * 86400)
    assert result.cost_mean == pytest.approx(2 * 2.0 * 0.01 + storage)


def test_spot_interruptions_slow_the_job() -> None:
    on_demand = PriceQuote("gpu", "V100", 1, 3.0)
    spot = PriceQuote("gpu", "V100", 1, 1.0, market="spot")
    profile = Profile(epoch_seconds=600.0, scaling="linear")
    cloud = CloudModel(boot_seconds=120.0, spot_interruptions_per_node_hour=0.5)
    calm = simulate(ElasticPlan((Stage(8, 4, 1, on_demand, 8),)), profile, cloud, samples=500)
    risky = simulate(ElasticPlan((Stage(8, 4, 1, spot, 8),)), profile, cloud, samples=500)
    assert risky.jct_mean > calm.jct_mean
    assert risky.cost_mean < calm.cost_mean


def test_from_seer_plan_uses_the_same_engine() -> None:
    from optuna_seer.planning.budget import Budget
    from optuna_seer.planning.seer import plan_seer

    workload = Workload(epoch_seconds=600, scaling="amdahl:0.95", max_epochs=27, startup_seconds=30)
    limits = ClusterLimits(max_gpus=64, provisioning_seconds=120)
    seer = plan_seer(Budget("12h", 400, 3.06), workload, limits=limits)
    instance = PriceQuote("p3.2xlarge", "V100", 1, 3.06)
    plan = ElasticPlan.from_seer(seer, instance)
    result = simulate(
        plan, Profile.from_workload(workload), CloudModel.from_limits(limits), samples=2
    )
    assert result.jct_mean == pytest.approx(seer.predicted_seconds, rel=1e-9)
    assert result.cost_mean == pytest.approx(seer.predicted_cost, rel=1e-9)
    assert [s.nodes for s in plan.stages] == [
        nodes_for(r.concurrent_trials, r.gpus_per_trial, 1) for r in seer.rungs
    ]
    # One rung type: a SEER rung and the stage placing it train the same shape.
    assert [s.shape for s in plan.stages] == [r.shape for r in seer.rungs]
    assert plan.rung_shapes() == tuple(r.shape for r in seer.rungs)
    assert all(
        isinstance(s, RungShape) and isinstance(r, RungShape)
        for s, r in zip(plan.stages, seer.rungs)
    )


def test_evaluator_validates_arguments() -> None:
    profile = Profile(epoch_seconds=1.0, scaling="linear")
    with pytest.raises(ValueError, match="samples"):
        PlanEvaluator(profile, CloudModel(), samples=0)
    with pytest.raises(ValueError, match="quantile"):
        PlanEvaluator(profile, CloudModel(), quantile=1.5)
    with pytest.raises(ValueError, match="boot_seconds"):
        CloudModel(boot_seconds=-1)


def test_stage_placement_is_validated() -> None:
    eight = PriceQuote("p3.16xlarge", "V100", 8, 24.48)
    with pytest.raises(ValueError, match="multiple"):
        Stage(2, 1, 12, eight, 4)
    with pytest.raises(ValueError, match="survivors must shrink"):
        ElasticPlan((Stage(2, 3, 1, eight, 1), Stage(3, 4, 1, eight, 1)))
    plan = ElasticPlan((Stage(4, 1, 16, eight, 4), Stage(1, 3, 8, eight, 1)))
    assert [s.concurrent_trials for s in plan.stages] == [2, 1]
    assert ElasticPlan.from_dict(plan.to_dict()) == plan
    with pytest.raises(ValueError, match=r"Stage\.n_trials=0"):
        Stage(0, 1, 1, eight, 1)
    with pytest.raises(TypeError, match=r"Stage\.nodes=1\.5"):
        Stage(1, 1, 1, eight, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Stage objects"):
        ElasticPlan(())


def test_elastic_plan_json_is_unchanged() -> None:
    """A plan file as earlier versions wrote it still loads, and is written the same."""
    quote = {
        "instance_type": "p3.16xlarge",
        "accelerator": "V100",
        "gpus": 8,
        "dollars_per_hour": 24.48,
        "market": "on-demand",
        "region": "",
        "source": "user",
        "date": "",
    }
    written = {
        "stages": [
            {"n_trials": 4, "resource": 1, "gpus_per_trial": 16, "instance": quote, "nodes": 4},
            {"n_trials": 1, "resource": 3, "gpus_per_trial": 8, "instance": quote, "nodes": 1},
        ]
    }
    plan = ElasticPlan.from_dict(written)
    assert [(s.n_trials, s.resource, s.gpus_per_trial, s.nodes) for s in plan.stages] == [
        (4, 1, 16, 4),
        (1, 3, 8, 1),
    ]
    assert plan.to_dict() == written


def test_contention_slows_each_wave_by_its_launches_at_once() -> None:
    """3 one-slot trials on 2 slots: a wave of 2 (slowed 1.5x) and a wave of 1 (not)."""
    q = PriceQuote("local-slot", "cpu", 1, 3.6)
    plan = ElasticPlan((Stage(3, 2, 1, q, 2), Stage(1, 4, 1, q, 1)))
    base = Profile(epoch_seconds=10, scaling="linear", startup_seconds=5)
    shared = Profile(epoch_seconds=10, scaling="linear", startup_seconds=5, contention={2: 1.5})
    launch0, launch1 = 5 + 2 * 10, 5 + 2 * 10
    assert simulate(plan, base).jct_p50 == pytest.approx(2 * launch0 + launch1)
    result = simulate(plan, shared)
    assert result.jct_p50 == pytest.approx(1.5 * launch0 + launch0 + launch1)
    # Billed: 2 slots for stage 0, 1 slot for stage 1, at $0.001/slot-second.
    assert result.cost_p50 == pytest.approx(0.001 * (2 * 2.5 * launch0 + launch1))
    # Used (what a per-use ledger charges): 2 launches slowed, 2 not.
    assert used_gpu_seconds(plan, base) == pytest.approx(3 * launch0 + launch1)
    assert used_gpu_seconds(plan, shared) == pytest.approx(2 * 1.5 * launch0 + launch0 + launch1)
    noisy = Profile(epoch_seconds=10, scaling="linear", epoch_cv=0.2, contention={2: 1.5})
    plain = Profile(epoch_seconds=10, scaling="linear", epoch_cv=0.2)
    assert simulate(plan, noisy, seed=3).jct_mean > simulate(plan, plain, seed=3).jct_mean
