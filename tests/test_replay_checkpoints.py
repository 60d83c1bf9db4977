"""The replay's model of the workers' checkpoints inside a rung (every N epochs, on a
preemption's SIGTERM) against rung-end checkpoints only: what a failed launch loses and where
its retry resumes. Real in-memory Optuna study, simulated clock."""

from __future__ import annotations

import math

import optuna
import pytest

from optuna_seer._optuna import storage_of
from optuna_seer.backends.base import LaunchSpec, LaunchState
from optuna_seer.backends.replay import RecordedCurve, ReplayBackend

SEED = 0  # preempts the launch after a few epochs
CURVE = RecordedCurve(tuple(0.1 * e for e in range(1, 11)), tuple(0.1 * e for e in range(1, 11)))


def _setup(**kwargs: object) -> tuple[optuna.Study, ReplayBackend, LaunchSpec]:
    study = optuna.create_study(direction="maximize")
    trial = study.ask({"config_id": optuna.distributions.IntDistribution(0, 0)})
    backend = ReplayBackend(
        [CURVE], "linear", epoch_seconds=10.0, slots=1, storage=storage_of(study), **kwargs
    )
    spec = LaunchSpec(
        study.study_name,
        "",
        trial.number,
        trial.params,
        rung=0,
        target_epochs=10,
        workers=1,
        checkpoint_uri="unused",
    )
    return study, backend, spec


@pytest.mark.parametrize(("every", "lost", "resumed_at"), [(None, 5, 0), (1, 1, 4), (2, 1, 4)])
def test_a_kill_loses_the_epochs_after_the_newest_checkpoint(
    every: int | None, lost: int, resumed_at: int
) -> None:
    kill = [True]

    def kill_after_epoch_5(handle: str, epoch: int, value: float) -> None:
        if epoch == 5 and kill[0]:  # right after the report, before its checkpoint
            backend.fail_launch(handle)

    _, backend, spec = _setup(checkpoint_every_epochs=every, observer=kill_after_epoch_5)
    handle = backend.start(spec)
    assert backend.wait([handle], math.inf) == [handle]
    assert backend.poll(handle).state is LaunchState.FAILED
    assert backend.epochs_lost == lost
    assert backend.epochs_trained(spec.study_name, spec.trial_number) == resumed_at
    kill[0] = False
    retry = backend.start(spec)  # rung 0 names no resume point: the epoch checkpoint is used
    assert backend.wait([retry], math.inf) == [retry]
    assert backend.poll(retry).state is LaunchState.SUCCEEDED
    assert backend.epochs_trained(spec.study_name, spec.trial_number) == 10


def test_a_preemption_keeps_every_completed_epoch_with_sigterm_and_none_without() -> None:
    outcomes = {}
    for sigterm in (False, True):
        study, backend, spec = _setup(
            preemption_rate=0.3,
            seed=SEED,
            checkpoint_every_epochs=None,
            checkpoint_on_preemption=sigterm,
        )
        handle = backend.start(spec)
        backend.wait([handle], math.inf)
        assert backend.poll(handle).state is LaunchState.FAILED
        trained = len(study.trials[0].intermediate_values)
        assert trained >= 2  # the seed preempts after a few epochs
        kept = backend.epochs_trained(spec.study_name, spec.trial_number)
        outcomes[sigterm] = (kept, backend.epochs_lost, trained)
    assert outcomes[False][:2] == (0, outcomes[False][2])  # all of them lost
    assert outcomes[True][:2] == (outcomes[True][2], 0)  # none lost


def test_the_interval_is_checked() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="checkpoint_every_epochs"):
            _setup(checkpoint_every_epochs=bad)
