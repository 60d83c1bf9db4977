"""Misuse of SeerSampler + SeerPruner in ``study.optimize`` is refused or handled the Optuna way.

Each case failed silently (or stopped the whole study with a misleading message) before:
steps in iterations switched the deadline stop off, steps going back were accepted, a NaN
report ended ``study.optimize``, ``gpus_for`` on a refused trial blamed the study's setup, an
objective that never suggests ran once beyond the width, and a study holding another
pruner's trials trained nothing and returned normally.
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import TrialState
import pytest

from optuna_seer import (
    Budget,
    ClusterLimits,
    Plan,
    SeerPruner,
    SeerSampler,
    Workload,
    gpus_for,
    plan_seer,
)
from optuna_seer.integration.keys import stop_reason


class SimulatedClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def small_plan() -> Plan:
    return plan_seer(
        Budget(deadline="1h", dollars=1.0, price_per_gpu_hour=3.6),
        Workload(epoch_seconds=10, scaling="linear", max_epochs=9),
        3,
        limits=ClusterLimits(max_gpus=4),
        min_marginal_speedup=1.0,
    )


def seer_study(plan: Plan, clock: SimulatedClock | None = None) -> optuna.Study:
    clock = clock or SimulatedClock()
    return optuna.create_study(
        direction="maximize",
        pruner=SeerPruner(plan=plan, clock=clock),
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0), clock=clock),
    )


def test_steps_in_iterations_are_refused_naming_cumulative_epochs() -> None:
    plan = small_plan()
    study = seer_study(plan)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        for epoch in range(1, plan.max_epochs + 1):
            trial.report(x * epoch, epoch * 1000)  # iterations, not epochs
            if trial.should_prune():
                raise optuna.TrialPruned()
        return x

    with pytest.raises(ValueError, match=r"step 1000, beyond the plan's 9 epochs.*cumulative"):
        study.optimize(objective, n_trials=3)


def test_steps_going_back_are_refused() -> None:
    plan = small_plan()
    study = seer_study(plan)
    trial = study.ask()
    trial.report(0.5, 2)
    assert not trial.should_prune()
    trial.report(0.6, 1)  # restarted per rung: not cumulative
    with pytest.raises(ValueError, match=r"step 1 after step 2.*cumulative"):
        trial.should_prune()


def test_a_nan_report_prunes_that_trial_and_the_study_goes_on() -> None:
    plan = small_plan()
    clock = SimulatedClock()
    study = seer_study(plan, clock)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        for epoch in range(1, plan.max_epochs + 1):
            clock.now += 10
            value = math.nan if trial.number == 1 and epoch == 2 else x * epoch
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return x

    study.optimize(objective, n_trials=6)
    assert len(study.trials) == 6
    diverged = study.trials[1]
    assert diverged.state == TrialState.PRUNED and diverged.last_step == 2
    reason = stop_reason(diverged)
    assert reason is not None and reason.startswith("reported nan at step 2"), reason
    inf_trial = study.ask()
    inf_trial.report(math.inf, 1)
    assert inf_trial.should_prune()


def test_gpus_for_on_a_trial_beyond_the_width_prunes_it_with_the_reason() -> None:
    plan = small_plan()
    study = seer_study(plan)

    def objective(trial: optuna.Trial) -> float:
        gpus = gpus_for(trial)  # before any suggest_*
        return float(gpus) * trial.suggest_float("x", 0, 1)

    study.optimize(objective, n_trials=plan.n_configs)
    assert len(study.trials) == plan.n_configs
    # Asked again: the next trial is beyond the width; gpus_for prunes it, optimize returns.
    study.optimize(objective, n_trials=3)
    refused = study.trials[plan.n_configs]
    assert refused.state == TrialState.PRUNED
    assert "beyond the plan's width" in str(stop_reason(refused))
    assert len(study.trials) == plan.n_configs + 1  # the study stopped itself
    with pytest.raises(ValueError, match=r"SeerSampler refused it \(beyond the plan's width"):
        gpus_for(refused, study=study)


def test_no_objective_body_runs_beyond_the_width() -> None:
    plan = small_plan()
    study = seer_study(plan)
    bodies = []

    def objective(trial: optuna.Trial) -> float:  # never calls suggest_*
        bodies.append(trial.number)
        return 1.0

    study.optimize(objective, n_trials=plan.n_configs + 10)
    assert len(bodies) == plan.n_configs


def test_a_study_with_another_pruners_trials_is_refused_by_name() -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner())
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=30)
    plan = small_plan()
    continued = optuna.load_study(
        study_name=study.study_name,
        storage=study._storage,
        pruner=SeerPruner(plan=plan),
        sampler=SeerSampler(),
    )
    with pytest.raises(ValueError, match=r"already holds 30 trials that SEER did not run"):
        continued.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    assert continued.trials[-1].state == TrialState.FAIL  # the trial asked is not left running
