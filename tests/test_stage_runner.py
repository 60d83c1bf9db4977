"""Executing RubberBand plans: per-stage clusters on ReplayBackend (simulated clock) and on
LocalBackend slots (real Lightning processes, slow), with the real ElasticTuner."""

from __future__ import annotations

from dataclasses import replace
import math
from pathlib import Path

import optuna
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState
import pytest

from optuna_seer.backends.base import LaunchSpec
from optuna_seer.backends.local import LocalBackend
from optuna_seer.backends.replay import RecordedCurve, ReplayBackend
from optuna_seer.execution.results import LaunchRecord
from optuna_seer.execution.stage_runner import StagedRun, run_elastic_plan, seer_plan_of
from optuna_seer.execution.staged_cluster import StagedCluster
from optuna_seer.planning.billing import BillingRule
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.simulator import CloudModel, simulate
from optuna_seer.planning.stage_plan import ElasticPlan, Stage
from tests.elastic_support import DIGITS_TRAIN, worker_env

ONE = PriceQuote("g1", "V100", 1, 3.0)
FOUR = PriceQuote("g4", "V100", 4, 12.0)
CURVES = [
    RecordedCurve(tuple(0.1 * c + 0.01 * e for e in range(9)), tuple(0.1 * c for _ in range(9)))
    for c in range(9)
]
PROFILE = Profile(epoch_seconds=60, scaling="linear", startup_seconds=10)


def _run(
    plan: ElasticPlan,
    cloud: CloudModel,
    delays: tuple[float, float],
    tmp_path: Path,
    slots: int = 9,
    deadline_s: float = 3600.0,
    profile: Profile = PROFILE,
) -> StagedRun:
    storage = InMemoryStorage()
    backend = ReplayBackend(
        CURVES,
        "linear",
        profile.epoch_seconds_on(1),
        slots=slots,
        startup_seconds=10,
        storage=storage,
    )
    return run_elastic_plan(
        plan,
        backend=backend,
        profile=profile,
        deadline_s=deadline_s,
        budget_dollars=100.0,
        train="benchmarks.seer_arm:replayed_training",
        checkpoints=tmp_path,
        storage=storage,
        study_name="staged",
        search_space=lambda t: t.suggest_int("config_id", 0, len(CURVES) - 1),
        sampler=optuna.samplers.RandomSampler(seed=0),
        cloud=cloud,
        delays=lambda n, stage: delays,
        storage_url="replay:in-memory",
        poll_seconds=5.0,
    )


def _most_at_once(launches: list[LaunchRecord]) -> int:
    """The most workers running at one moment."""
    events = sorted(
        [(r.started_at, r.workers) for r in launches]
        + [(r.finished_at, -r.workers) for r in launches]
    )
    most = now = 0
    for _, change in events:
        now += change
        most = max(most, now)
    return most


def test_noise_free_replay_is_the_simulation_resizes_and_bills_leases(tmp_path: Path) -> None:
    # 9 one-GPU nodes, then one 4-GPU node shared by two stages (one lease, no re-boot).
    plan = ElasticPlan((Stage(9, 1, 1, ONE, 9), Stage(3, 3, 2, FOUR, 1), Stage(1, 9, 4, FOUR, 1)))
    cloud = CloudModel(queue_seconds=30, boot_seconds=60, billing="per-second")
    run = _run(plan, cloud, (30.0, 60.0), tmp_path)
    predicted = simulate(plan, PROFILE, cloud, samples=1)
    assert run.wall_seconds == pytest.approx(predicted.jct[0])
    assert run.dollars == pytest.approx(predicted.cost[0])
    assert [(lease.instance, lease.nodes, lease.stages) for lease in run.leases] == [
        (ONE, 9, (0,)),
        (FOUR, 1, (1, 2)),
    ]
    states = run.tuning.trial_states
    assert list(states.values()).count(TrialState.COMPLETE.name) == 1
    assert len(states) == 9
    for index, stage in enumerate(plan.stages):
        ours = [r for r in run.tuning.launches if r.rung == index]
        assert {r.workers for r in ours} == {stage.gpus_per_trial}
        # Packed as placed: two 2-worker trials on the 4-GPU node, the third after them.
        assert _most_at_once(ours) == StagedCluster.capacity(stage)
    # The second stage waits for its cluster (queue + boot) after the first one ends.
    first, second = run.tuning.rungs[0], run.tuning.rungs[1]
    assert min(r.started_at for r in second.launches) == pytest.approx(first.finished_at + 90.0)
    assert "measured / predicted: time 1.000" in run.report(3600.0)


def test_billing_rounds_each_lease(tmp_path: Path) -> None:
    plan = ElasticPlan((Stage(9, 1, 1, ONE, 3), Stage(3, 3, 1, FOUR, 1)))
    cloud = CloudModel(billing="per-hour")
    run = _run(plan, cloud, (0.0, 0.0), tmp_path)
    # Two leases, each well under an hour: each is billed one hour on every node.
    assert run.dollars == pytest.approx(3 * 3.0 + 1 * 12.0)
    assert run.dollars == pytest.approx(simulate(plan, PROFILE, cloud, samples=1).cost[0])
    assert sum(lease.held_seconds for lease in run.leases) == pytest.approx(run.wall_seconds)


def test_the_staged_cluster_refuses_a_plan_wider_than_its_backend() -> None:
    plan = ElasticPlan((Stage(9, 1, 1, ONE, 9), Stage(3, 3, 1, ONE, 3)))
    backend = ReplayBackend(CURVES, "linear", 60.0, slots=4)
    with pytest.raises(ValueError, match=r"9 trials of 1 worker.* 4 slots"):
        StagedCluster(backend, plan)


def test_a_launch_waits_for_its_cluster_and_a_wider_launch_widens_it() -> None:
    plan = ElasticPlan((Stage(2, 1, 1, FOUR, 1), Stage(1, 2, 1, FOUR, 1)))
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.suggest_int("config_id", 0, 0)
    backend = ReplayBackend(CURVES, "linear", 60.0, slots=8, storage=study._storage)
    cluster = StagedCluster(backend, plan, delays=lambda n, s: (10.0, 20.0), billing="exact")
    spec = LaunchSpec(study.study_name, "", trial.number, trial.params, 0, 1, 1, "unused")
    handle = cluster.start(spec)
    assert cluster.wait([handle], math.inf) == [handle]
    assert cluster.now() == pytest.approx(30.0 + 60.0)
    assert cluster.poll(handle).started_at == pytest.approx(30.0)
    # A re-plan gave the trial 8 workers: one 4-GPU node cannot hold it, two nodes can.
    wide = LaunchSpec(study.study_name, "", trial.number, trial.params, 1, 2, 8, "unused", "r")
    handle = cluster.start(wide)
    assert cluster.wait([handle], math.inf) == [handle]
    assert [(lease.nodes, lease.stages) for lease in cluster.leases] == [(1, (0, 1)), (2, (1,))]
    assert "provisioning 2 nodes" in cluster.notes[0]
    cluster.release()
    assert all(lease.released_at is not None for lease in cluster.leases)
    assert cluster.bill() == pytest.approx(
        sum(lease.dollars(BillingRule.parse("exact")) for lease in cluster.leases)
    )


def test_the_seer_plan_keeps_the_stages_and_the_dearest_per_gpu_price() -> None:
    cheap = PriceQuote("g1", "V100", 1, 2.0)
    plan = ElasticPlan((Stage(9, 1, 1, cheap, 9), Stage(3, 3, 2, FOUR, 2)))
    seer = seer_plan_of(plan, PROFILE, deadline_s=3600, budget_dollars=50)
    assert [(r.n_trials, r.resource, r.gpus_per_trial) for r in seer.rungs] == [
        (9, 1, 1),
        (3, 3, 2),
    ]
    assert seer.reduction_factor == 3
    assert seer.price_per_gpu_second == pytest.approx(3.0 / 3600)
    assert seer.predicted_seconds == pytest.approx(simulate(plan, PROFILE, samples=1).jct[0])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_two_stage_plan_on_local_slots(tmp_path: Path) -> None:
    slot = PriceQuote("local-slot", "cpu", 1, 3.0)
    plan = ElasticPlan((Stage(2, 1, 1, slot, 2), Stage(1, 2, 1, slot, 1)))
    url = f"sqlite:///{tmp_path / 'staged.db'}"
    run = run_elastic_plan(
        plan,
        backend=LocalBackend(slots=2, gpus=(), log_dir=tmp_path / "logs", env=worker_env()),
        profile=Profile(epoch_seconds=5, scaling="linear", startup_seconds=15),
        deadline_s=1800,
        budget_dollars=10,
        train=DIGITS_TRAIN,
        checkpoints=tmp_path / "ckpt",
        storage=url,
        study_name="local-staged",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    trials = optuna.load_study(study_name="local-staged", storage=url).trials
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "PRUNED"]
    assert [(lease.nodes, lease.stages) for lease in run.leases] == [(2, (0,)), (1, (1,))]
    assert run.leases[0].released_at == pytest.approx(run.leases[1].requested_at)
    assert run.dollars == pytest.approx(
        sum(lease.held_seconds * lease.nodes for lease in run.leases) * 3.0 / 3600
    )
    assert "measured / predicted" in run.report(1800)


def test_a_backend_factory_gets_one_backend_per_instance_type(tmp_path: Path) -> None:
    plan = ElasticPlan((Stage(9, 1, 1, ONE, 9), Stage(3, 3, 2, FOUR, 1), Stage(1, 9, 4, FOUR, 1)))
    storage = InMemoryStorage()
    made: list[tuple[str, ReplayBackend]] = []

    def backend_for(instance: PriceQuote) -> ReplayBackend:
        # One clock across them (a replay starts where the last one stopped).
        start = made[-1][1].now() if made else 0.0
        backend = ReplayBackend(
            CURVES, "linear", 60.0, slots=9, startup_seconds=10, storage=storage, start_time=start
        )
        made.append((instance.instance_type, backend))
        return backend

    run = run_elastic_plan(
        plan,
        backend=backend_for,
        profile=PROFILE,
        deadline_s=3600.0,
        budget_dollars=100.0,
        train="benchmarks.seer_arm:replayed_training",
        checkpoints=tmp_path,
        storage=storage,
        study_name="per-type",
        search_space=lambda t: t.suggest_int("config_id", 0, len(CURVES) - 1),
        sampler=optuna.samplers.RandomSampler(seed=0),
        storage_url="replay:in-memory",
        poll_seconds=5.0,
    )
    assert [name for name, _ in made] == ["g1", "g4"]
    assert list(run.tuning.trial_states.values()).count(TrialState.COMPLETE.name) == 1
    assert [r.workers for r in run.tuning.launches if r.rung == 2] == [4]
    assert [(lease.instance, lease.stages) for lease in run.leases] == [(ONE, (0,)), (FOUR, (1, 2))]
    with pytest.raises(ValueError, match="has 2 slots but a stage on it runs 9"):
        StagedCluster(lambda q: ReplayBackend(CURVES, "linear", 60.0, slots=2), plan)


def test_node_leases_shrink_and_grow_in_place_as_simulated(tmp_path: Path) -> None:
    # 9 nodes, shrunk in place to 3, then grown to 4: the kept nodes keep their lease and
    # wait for nothing; only the added node is provisioned (queue + boot).
    plan = ElasticPlan((Stage(9, 1, 1, ONE, 9), Stage(3, 3, 1, ONE, 3), Stage(1, 9, 4, ONE, 4)))
    cloud = CloudModel(queue_seconds=30, boot_seconds=60, billing="exact", node_leases=True)
    run = _run(plan, cloud, (30.0, 60.0), tmp_path)
    predicted = simulate(plan, PROFILE, cloud, samples=1)
    assert run.wall_seconds == pytest.approx(predicted.jct[0])
    assert run.dollars == pytest.approx(predicted.cost[0])
    first, second, third = run.tuning.rungs
    # No provisioning between the first two stages: the kept nodes start at once.
    assert min(r.started_at for r in second.launches) == pytest.approx(first.finished_at)
    assert min(r.started_at for r in third.launches) == pytest.approx(second.finished_at + 90.0)
    leases = [(lease.nodes, lease.stages, lease.released_at) for lease in run.leases]
    end = run.wall_seconds
    assert leases == [
        (3, (0, 1, 2), end),  # kept to the end
        (6, (0,), first.finished_at),  # released by the shrink
        (1, (2,), end),  # added by the grow
    ]
    # Per cluster, the same plan provisions three clusters: the shrink waits for one too.
    whole = _run(plan, replace(cloud, node_leases=False), (30.0, 60.0), tmp_path / "whole")
    assert whole.wall_seconds == pytest.approx(end + 90.0)
    assert len(whole.leases) == 3 and whole.dollars > run.dollars


def test_per_hour_billing_keeps_nodes_and_bills_each_lease_once(tmp_path: Path) -> None:
    plan = ElasticPlan((Stage(9, 1, 1, ONE, 3), Stage(3, 3, 1, ONE, 1)))
    hourly = CloudModel(billing="per-hour")  # per node by default
    run = _run(plan, hourly, (0.0, 0.0), tmp_path)
    # Three node-hours: two released by the shrink, one kept (its lease under an hour).
    assert run.dollars == pytest.approx(3 * 3.0)
    assert run.dollars == pytest.approx(simulate(plan, PROFILE, hourly, samples=1).cost[0])
    clusters = _run(plan, replace(hourly, node_leases=False), (0.0, 0.0), tmp_path / "c")
    assert clusters.dollars == pytest.approx(3 * 3.0 + 1 * 3.0)  # a new lease, a new hour


def test_per_hour_spares_work_on_until_their_paid_hour_ends(tmp_path: Path) -> None:
    # 9 nodes shrunk to 1: the 8 given up are paid for their hour anyway, so they stay as
    # spares and run the second stage's 3 trials at once (1 wave, not 3); the grow to 4
    # takes 3 of them back instead of provisioning (no queue, no boot). Same bill.
    plan = ElasticPlan((Stage(9, 1, 1, ONE, 9), Stage(3, 3, 1, ONE, 1), Stage(1, 9, 4, ONE, 4)))
    hourly = CloudModel(queue_seconds=30, boot_seconds=60, billing="per-hour")
    run = _run(plan, hourly, (30.0, 60.0), tmp_path)
    predicted = simulate(plan, PROFILE, hourly, samples=1)
    first, second, third = run.tuning.rungs
    assert second.finished_at - first.finished_at == pytest.approx(130.0)  # 10 s + 2 × 60 s
    assert min(r.started_at for r in third.launches) == pytest.approx(second.finished_at)
    assert run.wall_seconds == pytest.approx(90.0 + 70.0 + 130.0 + 100.0)
    assert run.wall_seconds == pytest.approx(predicted.jct[0])
    assert run.dollars == pytest.approx(9 * 3.0) == pytest.approx(predicted.cost[0])
    assert sum(lease.nodes for lease in run.leases) == 9  # nothing provisioned after the first
    # Without spares: the second stage takes 3 waves and the grow provisions 3 nodes.
    released = _run(plan, replace(hourly, spare_nodes=False), (30.0, 60.0), tmp_path / "r")
    assert released.wall_seconds == pytest.approx(90.0 + 70.0 + 390.0 + 90.0 + 100.0)
    assert released.dollars == pytest.approx(12 * 3.0)


def test_a_spare_takes_no_launch_that_would_outlast_its_paid_hour(tmp_path: Path) -> None:
    # After the first stage (1,210 s) the spares have 2,389 s of paid time left: too little
    # for a 2,410 s launch (10 s + 2 × 1,200 s), so the second stage's two trials run one
    # after the other on its one node, and the spares are released unused.
    slow = Profile(epoch_seconds=1200, scaling="linear", startup_seconds=10)
    plan = ElasticPlan((Stage(3, 1, 1, ONE, 3), Stage(2, 3, 1, ONE, 1)))
    hourly = CloudModel(billing="per-hour")
    run = _run(plan, hourly, (0.0, 0.0), tmp_path, deadline_s=1e5, profile=slow)
    assert run.wall_seconds == pytest.approx(1210.0 + 2 * 2410.0)
    assert run.dollars == pytest.approx((2 + 2) * 3.0)  # 2 spares × 1 h, the kept node 2 h
    predicted = simulate(plan, slow, hourly, samples=1)
    assert (predicted.jct[0], predicted.cost[0]) == pytest.approx((run.wall_seconds, run.dollars))
