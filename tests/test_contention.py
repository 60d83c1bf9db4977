"""Contention (trials sharing a host run slower) in the Workload, SEER's schedule and plan.

Timing-free: a profile's measured contention must reach ``schedule()`` and
``plan_seer`` through ``Profile.workload()``, and the deterministic model must then agree
with the simulator that the profile feeds directly.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from optuna_seer.backends.replay import RecordedCurve, ReplayBackend
from optuna_seer.execution.tuner import ElasticTuner
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.planning.budget import Budget
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.seer import plan_seer
from optuna_seer.planning.simulator import CloudModel, simulate
from optuna_seer.planning.stage_plan import ElasticPlan
from optuna_seer.planning.workload import Workload, contention_table
from optuna_seer.profiling.harness import load_profile, save_profile

PRICE = 3.6 / 3600.0  # $ per slot-second
SLOTS = ClusterLimits(max_gpus=2)


def _workload(contention: float | dict[int, float] = 1.0) -> Workload:
    return Workload(
        epoch_seconds=10.0,
        scaling="amdahl:0.8",
        max_epochs=4,
        gpus_per_node=2,
        startup_seconds=5.0,
        contention=contention,
    )


def test_default_is_no_contention_and_old_calls_still_work() -> None:
    plain = Workload(epoch_seconds=10.0, scaling="linear", max_epochs=3)
    assert plain.contention == {1: 1.0}
    assert [plain.contention_on(n) for n in (0, 1, 2, 64)] == [1.0, 1.0, 1.0, 1.0]
    assert hash(plain) == hash(Workload(epoch_seconds=10.0, scaling="linear", max_epochs=3))


def test_contention_lookup_and_validation() -> None:
    w = _workload({2: 1.4, 4: 2.0})
    assert [w.contention_on(n) for n in (1, 2, 3, 4, 9)] == [1.0, 1.4, 1.4, 2.0, 2.0]
    assert _workload(1.5).contention == {1: 1.0, 2: 1.5}
    assert w == _workload({4: 2.0, 2: 1.4}) and hash(w) == hash(_workload({4: 2.0, 2: 1.4}))
    with pytest.raises(ValueError, match=r"contention\[1\]=1.2"):
        _workload({1: 1.2})
    with pytest.raises(ValueError, match=r"contention\[2\]=0"):
        _workload({2: 0.0})
    with pytest.raises(ValueError, match="contention key 0"):
        _workload({0: 1.5})
    with pytest.raises(ValueError, match="empty"):
        _workload({})
    with pytest.raises(TypeError, match="must be a number"):
        contention_table({2: "fast"})  # type: ignore[dict-item]


def test_contention_above_one_lengthens_and_prices_each_wave() -> None:
    """3 one-slot trials on 2 slots: a wave of 2 at once (slowed 1.5x), then 1 alone."""
    shapes = [RungShape(3, 2, 1), RungShape(1, 4, 2)]
    alone = schedule(shapes, _workload(), PRICE, SLOTS)
    shared = schedule(shapes, _workload({2: 1.5}), PRICE, SLOTS)
    launch = 5.0 + 2 * 10.0
    assert alone[0].end_s == pytest.approx(2 * launch)
    assert shared[0].end_s == pytest.approx(1.5 * launch + launch)
    assert shared[0].cost == pytest.approx(2 * PRICE * 2.5 * launch)
    # A rung's epoch time is the one its trials see at its concurrency.
    assert shared[0].epoch_seconds == pytest.approx(1.5 * alone[0].epoch_seconds)
    # The 2-slot finalist runs alone: contention does not touch it.
    assert shared[1].end_s - shared[1].start_s == pytest.approx(alone[1].end_s - alone[1].start_s)
    assert shared[1].epoch_seconds == alone[1].epoch_seconds
    assert shared[-1].end_s > alone[-1].end_s


def test_profile_carries_contention_into_the_workload_and_back(tmp_path: Path) -> None:
    profile = Profile(
        epoch_seconds=10.0, scaling="amdahl:0.8", startup_seconds=5.0, contention={2: 1.6}
    )
    path = tmp_path / "profile.json"
    save_profile(profile, path)
    loaded = load_profile(path)
    assert loaded.contention_on(2) == 1.6
    workload = loaded.workload(max_epochs=4, gpus_per_node=2)
    assert workload.contention == {1: 1.0, 2: 1.6}
    back = Profile.from_workload(workload)
    assert back.contention_on(2) == 1.6
    assert back.workload(max_epochs=4, gpus_per_node=2) == workload


def test_seer_plan_predicts_what_the_simulator_does_with_the_profile() -> None:
    """plan_seer times its plan with the profile's contention (through Profile.workload), so
    its predicted time and cost equal the noise-free simulation of the same profile."""
    profile = Profile(
        epoch_seconds=10.0, scaling="amdahl:0.8", startup_seconds=5.0, contention={2: 1.6}
    )
    budget = Budget(deadline=3600.0, dollars=100.0, price_per_gpu_hour=3.6)
    plan = plan_seer(budget, profile.workload(4, gpus_per_node=2), 2, limits=SLOTS, max_configs=4)
    elastic = ElasticPlan.from_seer(plan, PriceQuote("local-slot", "cpu", 1, 3.6))
    simulated = simulate(elastic, profile, CloudModel(), samples=2)
    assert simulated.jct_p50 == pytest.approx(plan.predicted_seconds)
    assert simulated.cost_p50 == pytest.approx(plan.predicted_cost)
    without = plan_seer(budget, _workload(), 2, limits=SLOTS, max_configs=4)
    assert plan.predicted_seconds > without.predicted_seconds


def _replayed_run(tmp_path: Path, shapes: list[RungShape]) -> object:
    """The real ElasticTuner on a replay whose launches run 1.5x slower than the workload
    says alone (90 s epochs, 30 s start-up against 60 s and 20 s), which is what the
    workload's contention says for two at once."""
    curves = [
        RecordedCurve(val_acc=tuple(0.1 * c + 0.01 * e for e in range(3)), test_acc=(0.5,) * 3)
        for c in range(1, 5)
    ]
    workload = Workload(
        epoch_seconds=60.0,
        scaling="linear",
        max_epochs=3,
        startup_seconds=20.0,
        contention={2: 1.5},
    )
    price = 3.0 / 3600
    plan = Plan(
        rungs=schedule(shapes, workload, price, ClusterLimits(max_gpus=2)),
        reduction_factor=2,
        deadline_s=1e6,
        budget_dollars=1e6,
        price_per_gpu_second=price,
        min_marginal_speedup=0.2,
    )
    storage = optuna.storages.InMemoryStorage()
    backend = ReplayBackend(curves, "linear", 90.0, slots=2, startup_seconds=30.0, storage=storage)
    study = optuna.create_study(
        storage=storage,
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(0), clock=backend.now),
        pruner=SeerPruner(plan=plan, clock=backend.now),
    )
    return ElasticTuner(
        study,
        plan,
        backend=backend,
        train="benchmarks.seer_arm:replayed_training",
        checkpoints=str(tmp_path),
        search_space=lambda trial: trial.suggest_int("config_id", 0, len(curves) - 1),
        workload=workload,
        storage_url="replay:in-memory",
        poll_seconds=5.0,
        progress=False,
    ).run()


def test_the_executor_expects_start_up_slowed_by_contention_too(tmp_path: Path) -> None:
    """Two launches at once start 1.5x slower, as the workload says: the measured start-up
    (30 s) is what the plan expected at that concurrency (20 s alone x 1.5), so the executor
    keeps the plan, silently, instead of reading it as drift ("re-timed"/"re-plan" notes)."""
    result = _replayed_run(tmp_path, [RungShape(2, 1, 1), RungShape(1, 3, 1)])
    assert result.best_trial is not None  # type: ignore[attr-defined]
    notes = result.notes  # type: ignore[attr-defined]
    assert not any(note.startswith("re-") for note in notes), notes


def test_the_executor_times_a_rung_alone_from_launches_measured_two_at_once(
    tmp_path: Path,
) -> None:
    """Rung 0 ran two at once (90 s epochs, 30 s start-up, measured); rung 1 runs one trial
    alone. Re-timing the rest of the plan takes the contention out of the measurements, so
    rung 1 is timed at the alone rate the measurements imply (60 s, 20 s), not at 90 s."""
    result = _replayed_run(tmp_path, [RungShape(2, 1, 1), RungShape(1, 3, 1)])
    final = result.final_plan  # type: ignore[attr-defined]
    alone = final.rungs[1]
    assert alone.concurrent_trials == 1
    assert alone.epoch_seconds == pytest.approx(60.0)
    assert alone.end_s - alone.start_s == pytest.approx(20.0 + 2 * 60.0)
