"""A trial refused for budget that re-runs a parked configuration closes the plan's width.

Four threads of ``study.optimize`` (``tests/faults/test_fault_optimize_budget.py``, under
load) once waited until the deadline: the trial at the width's last place, refused for budget,
became a re-run, so the configurations numbered one fewer than the width, and every later
trial, asked beyond the width, waited for a value that place would never bring.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from optuna_seer import Budget, ClusterLimits, Workload, plan_seer
from optuna_seer.integration.keys import TRIAL_AWAITING_RERUN, TRIAL_RERUN_OF
from optuna_seer.integration.reruns import budget_closed, door_state, pending_arrivals


def _trial(number: int, state: TrialState, **attrs: object) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(
        state=state, value=0.5 if state == TrialState.COMPLETE else None, system_attrs=attrs
    )
    trial.number = number
    return trial


def test_a_re_run_at_a_place_within_the_width_leaves_no_place_open() -> None:
    plan = plan_seer(
        Budget(deadline="1h", dollars=1.0, price_per_gpu_hour=3.6),
        Workload(epoch_seconds=10, scaling="linear", max_epochs=9),
        limits=ClusterLimits(max_gpus=4),
        max_configs=18,
    )
    width = plan.n_configs
    assert len(plan.rungs) >= 2
    done = [_trial(n, TrialState.PRUNED) for n in range(width - 1)]
    last_place = _trial(width - 1, TrialState.COMPLETE, **{TRIAL_RERUN_OF: 1})
    waiting = [
        _trial(n, TrialState.RUNNING, **{TRIAL_AWAITING_RERUN: True})
        for n in range(width, width + 4)
    ]
    trials = [*done, last_place, *waiting]
    assert budget_closed(plan, trials)
    assert pending_arrivals(plan, trials, None) == 0
    assert not door_state(plan, trials, maximize=True).waiting
    # A re-run asked beyond the width (its place was not one of the plan's) closes nothing:
    beyond = [*done, _trial(width - 1, TrialState.PRUNED), _trial(width, TrialState.RUNNING)]
    beyond[-1] = _trial(width, TrialState.COMPLETE, **{TRIAL_RERUN_OF: 1})
    assert not budget_closed(plan, beyond)
    # ... and a failed configuration's place is open again for a new trial.
    failed = [*done[:-1], _trial(width - 2, TrialState.FAIL)]
    assert not budget_closed(plan, failed) and pending_arrivals(plan, failed, None) == 2
