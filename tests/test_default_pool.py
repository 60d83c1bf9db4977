"""The pair plans for the workers that are there unless given ``limits`` (issue: the README's
``study.optimize(..., n_jobs=4)`` example planned 189 trials at once; a toy run 10,000).

tests/conftest.py sets ``OPTUNA_SEER_WORKERS=none`` for the rest of the suite; each test here
sets the environment it needs.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from optuna_seer import Budget, ClusterLimits, SeerPruner, SeerSampler, Workload, plan_seer
from optuna_seer._machine import cpu_slots, default_pool, gpu_count
from optuna_seer.planning.seer import InfeasiblePlanError

BUDGET = Budget(deadline="12h", dollars=400, price_per_gpu_hour=3.0)
WORKLOAD = Workload(epoch_seconds=600.0, scaling="amdahl:0.95", max_epochs=40, gpus_per_node=8)


def _at_once(pruner: SeerPruner) -> int:
    """The most workers the plan uses at once."""
    return max(rung.gpus for rung in pruner.plan.rungs)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPTUNA_SEER_WORKERS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.mark.usefixtures("no_gpu")
def test_without_limits_the_plan_fits_this_machines_cpu_slots() -> None:
    pruner = SeerPruner(BUDGET, WORKLOAD)
    assert _at_once(pruner) <= cpu_slots()
    assert pruner.plan == plan_seer(BUDGET, WORKLOAD, 3, limits=ClusterLimits(cpu_slots()))
    # What it planned before the default: 192 configurations at once.
    assert plan_seer(BUDGET, WORKLOAD, 3).rungs[0].n_trials == 192


def test_visible_gpus_are_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPTUNA_SEER_WORKERS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    assert default_pool().size == 3
    assert _at_once(SeerPruner(BUDGET, WORKLOAD)) <= 3


def test_gpus_the_driver_lists_count_when_no_variable_narrows_them(tmp_path: Path) -> None:
    for index in range(4):
        (tmp_path / f"0000:0{index}:00.0").mkdir()
    assert gpu_count({}, driver_dir=tmp_path) == 4
    assert gpu_count({"CUDA_VISIBLE_DEVICES": "1"}, driver_dir=tmp_path) == 1
    assert gpu_count({}, driver_dir=tmp_path / "absent") == 0


def test_the_variable_sets_the_pool_and_explicit_limits_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPTUNA_SEER_WORKERS", "4")
    assert _at_once(SeerPruner(BUDGET, WORKLOAD)) <= 4
    unbounded = SeerPruner(BUDGET, WORKLOAD, limits=ClusterLimits())
    assert _at_once(unbounded) == 192
    monkeypatch.setenv("OPTUNA_SEER_WORKERS", "none")
    assert _at_once(SeerPruner(BUDGET, WORKLOAD)) == 192


@pytest.mark.parametrize("value", ["0", "-2", "four", "2.5", ""])
def test_a_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("OPTUNA_SEER_WORKERS", value)
    with pytest.raises(ValueError, match=f"OPTUNA_SEER_WORKERS={value!r}.*integer >= 1.*none"):
        SeerPruner(BUDGET, WORKLOAD)


def test_a_pool_too_small_for_the_deadline_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTUNA_SEER_WORKERS", "1")
    tight = Budget(deadline="3h", dollars=400, price_per_gpu_hour=3.0)
    with pytest.raises(InfeasiblePlanError, match=r"OPTUNA_SEER_WORKERS=1.*limits=ClusterLimits"):
        SeerPruner(tight, WORKLOAD)  # 40 epochs of 10 minutes on one worker: 6h40


def test_processes_planning_for_different_pools_are_told_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = optuna.storages.InMemoryStorage()

    def study(workers: str) -> optuna.Study:
        monkeypatch.setenv("OPTUNA_SEER_WORKERS", workers)
        return optuna.create_study(
            study_name="shared",
            storage=storage,
            load_if_exists=True,
            direction="maximize",
            sampler=SeerSampler(optuna.samplers.RandomSampler(0)),
            pruner=SeerPruner(BUDGET, WORKLOAD),
        )

    first = study("8")
    first.ask().suggest_float("x", 0, 1)
    second = study("2")
    with pytest.raises(ValueError, match=r"another SEER plan.*pool.*OPTUNA_SEER_WORKERS"):
        second.ask().suggest_float("x", 0, 1)


def test_the_pair_plans_at_the_stragglers_p95_when_given_their_spread() -> None:
    """``SeerPruner(epoch_cv=...)`` makes the plan ``plan_seer`` makes at the stragglers'
    quantile: on a 4-worker pool whose mean plan fills the whole deadline, a narrower one."""
    budget = Budget(deadline="2h", dollars=24, price_per_gpu_hour=3.0)
    workload = Workload(epoch_seconds=60, scaling="resnet50", max_epochs=40, startup_seconds=30)
    pool = ClusterLimits(max_gpus=4)
    mean = SeerPruner(budget, workload, limits=pool, max_configs=150).plan
    p95 = SeerPruner(budget, workload, limits=pool, max_configs=150, epoch_cv=0.1).plan
    assert p95 == plan_seer(budget, workload, 3, limits=pool, max_configs=150, epoch_cv=0.1)
    assert (mean.n_configs, p95.n_configs) == (96, 84)
    assert mean.predicted_seconds == pytest.approx(7200.0)  # no room left for a straggler
    wider = {
        q: SeerPruner(
            budget, workload, limits=pool, max_configs=150, epoch_cv=0.3, quantile=q
        ).plan.n_configs
        for q in (0.95, 0.99)
    }
    assert wider == {0.95: 76, 0.99: 72}  # the quantile reaches the planner too
    with pytest.raises(ValueError, match=r"quantile=1.2 must lie in \[0.5, 1\)"):
        SeerPruner(budget, workload, limits=pool, epoch_cv=0.1, quantile=1.2)
