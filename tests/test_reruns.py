"""Plain ``report``/``should_prune`` trials at the last rung's door: parked, then re-run.

One thread trains the trials one after another, so a trial reaching the last rung's door
cannot know the values still to come: it is parked, and once the door's values are all in,
the configurations ranking among the last rung's width are trained again (re-runs). These
tests fail on the earlier rule (ASHA's rounded fraction at the door), where early trials
went on into the last rung and more trials than its width trained fully.
"""

from __future__ import annotations

import math
import time

import optuna
from optuna.trial import TrialState
import pytest

from optuna_seer import Budget, ClusterLimits, SeerPruner, SeerSampler, Workload
from optuna_seer.integration.keys import (
    TRIAL_AWAITING_RERUN,
    rung_end_key,
    rung_value,
    stop_reason,
)
from optuna_seer.integration.ledger import trial_gpu_seconds
from optuna_seer.integration.reruns import PARKED, door_state, pending_arrivals, rerun_of
from optuna_seer.integration.trial_gpus import ImplicitPlacement, placement_of
from tests.clocks import SimulatedClock


def seer_study(clock: SimulatedClock, dollars: float = 5.0) -> optuna.Study:
    pruner = SeerPruner(  # $5 pay 100 epochs of 60 s on one GPU
        Budget(deadline="2h", dollars=dollars, price_per_gpu_hour=3.0),
        Workload(epoch_seconds=60, scaling="linear", max_epochs=9),
        reduction_factor=3,
        limits=ClusterLimits(max_gpus=4),
        min_marginal_speedup=1.0,
        clock=clock,
    )
    return optuna.create_study(
        direction="maximize",
        pruner=pruner,
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=3), clock=clock),
    )


def curve_objective(clock: SimulatedClock, resumed: list[int]) -> object:
    def objective(trial: optuna.Trial) -> float:
        quality = trial.suggest_float("quality", 0.0, 1.0)
        earlier = rerun_of(trial)
        if earlier is not None:
            resumed.append(earlier)
        value = 0.0
        for epoch in range(1, 10):
            clock.now += 60
            value = quality * (1 - math.exp(-epoch / 3))
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    return objective


def test_one_thread_trains_the_last_rung_with_the_plans_width_and_the_right_configurations() -> (
    None
):
    clock = SimulatedClock()
    study = seer_study(clock)
    plan = study.pruner.plan  # type: ignore[attr-defined]
    keep, door = plan.rungs[-1].n_trials, plan.rungs[-2]
    resumed: list[int] = []
    study.optimize(curve_objective(clock, resumed), n_trials=10 * plan.n_configs)  # type: ignore[arg-type]
    trials = study.trials
    configurations = [t for t in trials if rerun_of(t) is None and t.params]
    reruns = [t for t in trials if rerun_of(t) is not None]
    fully_trained = [t for t in trials if (t.last_step or 0) >= plan.max_epochs]
    assert len(fully_trained) == keep  # not more than the plan's last width
    assert len(configurations) == plan.n_configs
    # The finalists are the configurations with the best values at the door, among all.
    at_door = sorted(
        (t for t in configurations if rung_value(t.system_attrs, door.index) is not None),
        key=lambda t: -t.intermediate_values[door.resource],
    )
    best = {t.params["quality"] for t in at_door[:keep]}
    assert {t.params["quality"] for t in fully_trained} == best
    # Each re-run trains a parked trial's configuration, and the objective could tell which.
    for t in reruns:
        parked = trials[rerun_of(t)]  # type: ignore[index]
        assert parked.state == TrialState.PRUNED
        assert parked.system_attrs[rung_end_key(door.index)].get(PARKED)
        assert "parked" in str(stop_reason(parked))
        assert t.params == parked.params
    assert sorted(resumed) == sorted(rerun_of(t) for t in reruns)
    # No body runs beyond the configurations and their re-runs: the last re-run stopped it.
    assert len(trials) == plan.n_configs + len(reruns)
    assert study.best_trial.params["quality"] == max(t.params["quality"] for t in at_door)


def test_a_rerun_counts_once_at_the_door() -> None:
    clock = SimulatedClock()
    study = seer_study(clock)
    plan = study.pruner.plan  # type: ignore[attr-defined]
    study.optimize(curve_objective(clock, []), n_trials=10 * plan.n_configs)  # type: ignore[arg-type]
    trials = study.trials
    state = door_state(plan, trials, maximize=True)
    assert state.due == () and not state.waiting  # all decided, every due re-run ran
    assert pending_arrivals(plan, trials, None) == 0
    reruns = [t for t in trials if rerun_of(t) is not None]
    assert reruns, "the scenario must park and re-run some trial"
    # The re-runs recorded their rung ends (the ledger needs them) but the ranking skips them.
    door = plan.rungs[-2].index
    assert all(rung_end_key(door) in t.system_attrs for t in reruns)


def test_rerun_of_reads_a_live_trial_and_a_frozen_one() -> None:
    study = optuna.create_study()
    trial = study.ask()
    assert rerun_of(trial) is None
    study._storage.set_trial_system_attr(trial._trial_id, "seer:rerun_of", 4)
    assert rerun_of(trial) == 4
    assert rerun_of(study._storage.get_trial(trial._trial_id)) == 4


@pytest.mark.parametrize("dollars", [2.0, 5.0])
def test_the_budget_holds_with_reruns(dollars: float) -> None:
    clock = SimulatedClock()
    study = seer_study(clock, dollars=dollars)
    plan = study.pruner.plan  # type: ignore[attr-defined]
    study.optimize(curve_objective(clock, []), n_trials=10 * plan.n_configs)  # type: ignore[arg-type]
    gpu_seconds = sum(
        (t.last_step or 0) * 60 for t in study.trials if t.state != TrialState.FAIL
    )  # one GPU per trial in this plan, 60 s per epoch
    assert all(r.gpus_per_trial == 1 for r in plan.rungs)
    assert gpu_seconds * plan.price_per_gpu_second <= plan.budget_dollars * (1 + 1e-9)
    assert sum(1 for t in study.trials if (t.last_step or 0) >= plan.max_epochs) <= (
        plan.rungs[-1].n_trials
    )


def test_a_trial_waiting_to_learn_if_it_re_runs_is_neither_placed_nor_charged() -> None:
    """On the wall clock a trial is placed at its start; one that waits (in ``before_trial``)
    for the door's last values holds no worker and must not be charged meanwhile."""
    study = optuna.create_study()
    trial = study.ask()
    rule = ImplicitPlacement(gpus=(1, 1), ends=(1, 3))
    frozen = study._storage.get_trial(trial._trial_id)
    assert placement_of(frozen, rule) is not None  # placed at its datetime_start
    study._storage.set_trial_system_attr(trial._trial_id, TRIAL_AWAITING_RERUN, True)
    waiting = study._storage.get_trial(trial._trial_id)
    assert placement_of(waiting, rule) is None
    assert trial_gpu_seconds(waiting, time.time() + 3600, rule) == 0.0
