"""What SEER needs of the steps a trial reports: cumulative epochs, never beyond the plan.

The pruner places a trial in the plan by its step: rung ``r`` ends when the trial has
reported ``plan.rungs[r].resource`` epochs. Steps counted in iterations or batches, or
restarted at every launch or rung, would put the trial in the wrong rung (or past the last
one, where no deadline or budget stop applies), so they are refused by name. And a trial on
leased workers has the step of its first report inside a rung recorded
(:func:`mark_segment`), from which the deadline check times that rung's epochs.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial

from optuna_seer._optuna import storage_of, trial_id_of
from optuna_seer.integration.keys import TRIAL_LEASE, TRIAL_SEGMENT
from optuna_seer.planning.plan import Plan


def check_steps(trial: FrozenTrial, max_epochs: int) -> None:
    """Refuse ``trial``'s reports unless its steps are cumulative epochs within the plan.

    Raises:
        ValueError: A step beyond ``max_epochs``, or a step reported after a larger one.

    Example:
        >>> import optuna
        >>> trial = optuna.trial.create_trial(value=1.0, intermediate_values={1: 0.5, 2000: 0.6})
        >>> check_steps(trial, max_epochs=9)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: trial -1 reported step 2000, beyond the plan's 9 epochs: ...
    """
    steps = list(trial.intermediate_values)
    if not steps:
        return
    top, last = max(steps), steps[-1]
    need = (
        "SEER needs the cumulative number of epochs trained as the step "
        f"(trial.report(value, epoch) with epoch = 1, 2, ..., {max_epochs})"
    )
    if top > max_epochs:
        raise ValueError(
            f"trial {trial.number} reported step {top}, beyond the plan's {max_epochs} "
            f"epochs: {need}, not iterations or batches."
        )
    if last < top:
        raise ValueError(
            f"trial {trial.number} reported step {last} after step {top}: {need}, counted "
            "from the trial's start, not restarted per launch or rung."
        )


def mark_segment(
    plan: Plan, study: optuna.Study, trial: FrozenTrial, step: int, now: float
) -> None:
    """Record the first report inside its current rung of a ``trial`` that leases its
    workers (one write per rung), from which
    :func:`~optuna_seer.integration.admission.out_of_time` times the rung's epochs: such a
    trial waits and is relaunched between rungs. Other trials write nothing here."""
    if TRIAL_LEASE not in trial.system_attrs:
        return
    rung = plan.rung_for_step(step)
    since = plan.epochs_before(rung.index)
    first = trial.system_attrs.get(TRIAL_SEGMENT)
    if step >= plan.max_epochs or step <= since:
        return  # at a rung end: the next rung's first epoch has not been trained yet
    if first is None or int(first[0]) != rung.index:
        storage_of(study).set_trial_system_attr(
            trial_id_of(trial), TRIAL_SEGMENT, [rung.index, now, step]
        )
