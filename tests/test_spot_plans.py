"""Spot-aware plans: risk per instance and market, the spot/on-demand mix that meets the
deadline at p95, and spot reclaims executed on the replay clock."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna
from optuna.storages import InMemoryStorage
import pytest

from optuna_seer.backends.local import LocalBackend
from optuna_seer.backends.replay import RecordedCurve, ReplayBackend
from optuna_seer.execution.stage_runner import run_elastic_plan
from optuna_seer.execution.staged_cluster import StagedCluster
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.rubberband import PlanningProblem, SuccessiveHalvingJob
from optuna_seer.planning.simulator import CloudModel, simulate
from optuna_seer.planning.spot import SpotOffer, plan_spot_mix, recovery_seconds, spot_risks
from optuna_seer.planning.stage_plan import ElasticPlan, Stage

OD = PriceQuote("g1", "V100", 1, 3.0)
SPOT = PriceQuote("g1", "V100", 1, 0.9, market="spot")
PROFILE = Profile(epoch_seconds=600, scaling="amdahl:0.95", epoch_cv=0.05, startup_seconds=60)
CLOUD = CloudModel(queue_seconds=60, boot_seconds=120, billing="per-second")


def _problem(deadline_h: float) -> PlanningProblem:
    return PlanningProblem(
        SuccessiveHalvingJob.geometric(27, 3, 9),
        PROFILE,
        (OD,),
        deadline_h * 3600,
        cloud=CLOUD,
        max_gpus=27,
        samples=200,
    )


def test_an_offer_pairs_one_instance_type_on_both_markets() -> None:
    with pytest.raises(ValueError, match="on-demand and a spot quote"):
        SpotOffer(OD, OD, 0.1)
    with pytest.raises(ValueError, match="same instance type"):
        SpotOffer(OD, replace(SPOT, instance_type="g2"), 0.1)
    with pytest.raises(ValueError, match="interruptions_per_node_hour"):
        SpotOffer(OD, SPOT, -1.0)


def test_risk_prices_spot_by_its_reclaims_and_recovery() -> None:
    offer = SpotOffer(OD, SPOT, 0.5)
    cloud = replace(CLOUD, checkpoint_interval_epochs=0)
    (demand, spot) = spot_risks([offer], PROFILE, cloud, launch_epochs=4)
    recovery = 60 + 120 + 60 + 0.5 * 4 * 600  # new node, relaunch, half the launch's work
    assert recovery_seconds(PROFILE, cloud, 1, 4) == recovery
    assert (demand.effective_dollars_per_hour, demand.reclaimed_within_hour) == (3.0, 0.0)
    assert spot.recovery_s == recovery
    assert spot.reclaimed_within_hour == pytest.approx(0.3935, abs=1e-4)
    assert spot.effective_dollars_per_hour == pytest.approx(0.9 / (1 - 0.5 * recovery / 3600))
    # Reclaimed so often that recoveries take all the time: spot is worth nothing.
    (_, hopeless) = spot_risks([SpotOffer(OD, SPOT, 10.0)], PROFILE, cloud, launch_epochs=4)
    assert hopeless.effective_dollars_per_hour == float("inf")


def test_the_simulator_reclaims_each_spot_type_at_its_own_rate() -> None:
    other = PriceQuote("g4", "V100", 4, 3.6, market="spot")
    plan = ElasticPlan((Stage(8, 1, 1, SPOT, 8), Stage(4, 3, 1, other, 1)))
    calm = replace(CLOUD, spot_rates=(("g1", 0.0), ("g4", 0.0)))
    stormy = replace(CLOUD, spot_rates=(("g1", 0.0), ("g4", 3.0)))
    a = simulate(plan, PROFILE, calm, samples=300)
    b = simulate(plan, PROFILE, stormy, samples=300)
    assert a.stage_end_s[0] == b.stage_end_s[0]  # g1 untouched
    assert b.jct_mean > a.jct_mean + 300  # ~1.2 reclaims of ~9 minutes each
    # Checkpoints at rung ends only lose more work per reclaim than per-epoch ones.
    rung_end = simulate(plan, PROFILE, replace(stormy, checkpoint_interval_epochs=0), samples=300)
    assert rung_end.jct_mean > b.jct_mean


def test_the_mix_meets_the_deadline_and_is_never_dearer_than_either_market() -> None:
    problem = _problem(3.0)
    plans = plan_spot_mix(problem, [SpotOffer(OD, SPOT, 0.3)])
    assert plans.mixed.stats.jct_quantile <= problem.deadline_s
    for baseline in (plans.on_demand, plans.spot):
        if baseline is not None:
            assert baseline.stats.jct_quantile <= problem.deadline_s
            assert plans.mixed.stats.cost <= baseline.stats.cost
    assert plans.on_demand is not None
    assert plans.mixed.stats.cost < plans.on_demand.stats.cost  # spot at 30 % pays here
    assert "effective $/h" in plans.summary() and "all on-demand" in plans.summary()
    # Reclaimed every few minutes: nothing on spot meets the deadline, the mix is on demand.
    stormy = plan_spot_mix(problem, [SpotOffer(OD, SPOT, 30.0)])
    assert stormy.spot is None
    assert {s.instance.market for s in stormy.mixed.plan.stages} == {"on-demand"}


def test_spot_reclaims_on_the_replay_fail_launches_that_are_retried(tmp_path: Path) -> None:
    curves = [
        RecordedCurve(tuple(0.1 * c + 0.01 * e for e in range(9)), (0.0,) * 9) for c in range(9)
    ]
    plan = ElasticPlan((Stage(9, 1, 1, SPOT, 9), Stage(3, 3, 1, SPOT, 3), Stage(1, 9, 1, OD, 1)))
    cloud = replace(CLOUD, spot_rates=(("g1", 2.0),), checkpoint_interval_epochs=0)
    storage = InMemoryStorage()
    backend = ReplayBackend(curves, "linear", 600.0, slots=9, startup_seconds=60, storage=storage)
    run = run_elastic_plan(
        plan,
        backend=backend,
        profile=PROFILE,
        deadline_s=12 * 3600,
        budget_dollars=1000,
        train="optuna_seer.cli.tune_command:replayed_training",
        checkpoints=tmp_path,
        storage=storage,
        study_name="spot",
        search_space=lambda t: t.suggest_int("config_id", 0, 8),
        sampler=optuna.samplers.RandomSampler(seed=0),
        cloud=cloud,
        delays=lambda n, stage: (60.0, 120.0),
        storage_url="replay:in-memory",
        poll_seconds=60.0,
        simulate_preemptions=True,
        seed=3,
    )
    assert run.preemptions > 0
    assert run.tuning.failed_launches > 0
    assert backend.epochs_lost > 0
    states = run.tuning.trial_states
    assert list(states.values()).count("COMPLETE") == 1 and "FAIL" not in states.values()
    assert "spot node(s) reclaimed" in run.report()
    # The same seed reclaims the same nodes at the same moments.
    assert run.preemptions == _rerun_preemptions(plan, cloud, curves, tmp_path)


def _rerun_preemptions(
    plan: ElasticPlan, cloud: CloudModel, curves: list[RecordedCurve], tmp_path: Path
) -> int:
    storage = InMemoryStorage()
    backend = ReplayBackend(curves, "linear", 600.0, slots=9, startup_seconds=60, storage=storage)
    return run_elastic_plan(
        plan,
        backend=backend,
        profile=PROFILE,
        deadline_s=12 * 3600,
        budget_dollars=1000,
        train="optuna_seer.cli.tune_command:replayed_training",
        checkpoints=tmp_path / "again",
        storage=storage,
        study_name="spot",
        search_space=lambda t: t.suggest_int("config_id", 0, 8),
        sampler=optuna.samplers.RandomSampler(seed=0),
        cloud=cloud,
        delays=lambda n, stage: (60.0, 120.0),
        storage_url="replay:in-memory",
        poll_seconds=60.0,
        simulate_preemptions=True,
        seed=3,
    ).preemptions


def test_simulated_reclaims_need_a_backend_that_can_fail_a_launch() -> None:
    plan = ElasticPlan((Stage(2, 1, 1, SPOT, 2),))
    with pytest.raises(ValueError, match="fail_launch"):
        StagedCluster(LocalBackend(2, gpus=()), plan, preemption_rate=lambda quote: 1.0)
