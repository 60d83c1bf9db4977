"""The last rung's door in ``study.optimize``: a trial waits, without workers, for its seat.

An asynchronous promotion into the last rung is made on the values seen so far: a trial that
started the last rung early could finish it before better ones report, and more trials than
the plan's last width would train fully. So :func:`optuna_seer.rungs` holds a trial that ended
the last-but-one rung until :meth:`~optuna_seer.SeerPruner.final_rung_entry` lets it in (or
says better ones took the places), for as long as another trial of the study may still change
the ranking.
"""

from __future__ import annotations

import contextlib
import random
import time

import optuna
from optuna.trial import TrialState

from optuna_seer._optuna import UpdateFinishedTrialError, storage_of, study_id_of
from optuna_seer.integration.heartbeat import DeadTrialScan
from optuna_seer.integration.keys import TRIAL_AWAITING_RERUN, TRIAL_AWAITING_SEAT
from optuna_seer.integration.pruner import WAIT, SeerPruner

IDLE_GRACE_S = 5.0
"""How long no other trial of the study may have run (trained or been about to) before a trial
waiting for its last rung goes on: the moment between one trial's end and the next one's
start, when no trial runs though the study goes on."""


def wait_for_final_seat(
    study: optuna.Study, number: int, pruner: SeerPruner, poll_seconds: float
) -> None:
    """Hold trial ``number``, without workers, until ``pruner`` lets it into the last rung;
    raises ``TrialPruned`` if better trials took the places.

    It waits only while another trial of the study runs and is not itself waiting
    (:func:`others_run`: it trains, waits for workers, or is being sampled, so its value may
    still change the ranking), or did so within :data:`IDLE_GRACE_S`. Once every running
    trial waits, nothing more can be learned, and it goes on what is known. (Asking whether
    the pool's workers were leased instead let a finalist in early whenever the next trial's
    sampling and lease took longer than the grace.) The trial is marked
    :data:`~optuna_seer.integration.keys.TRIAL_AWAITING_SEAT` meanwhile.
    """
    storage = storage_of(study)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id_of(study), number)
    idle_since: float | None = None
    scan = DeadTrialScan(study)  # a killed process's trial would keep the door shut
    marked = False
    try:
        while True:
            verdict = pruner.final_rung_entry(study, storage.get_trial(trial_id))
            if verdict is None:
                return
            if verdict != WAIT:
                raise optuna.TrialPruned(verdict)
            if not marked:
                storage.set_trial_system_attr(trial_id, TRIAL_AWAITING_SEAT, True)
                marked = True
            scan()
            if others_run(study, number):
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= max(IDLE_GRACE_S, 5 * poll_seconds):
                return
            time.sleep(poll_seconds * (0.5 + random.random()))
    finally:
        if marked:
            # Another process may have failed this trial meanwhile (taken for dead): the
            # mark no longer matters, and the exception that ends the wait must show.
            with contextlib.suppress(UpdateFinishedTrialError):
                storage.set_trial_system_attr(trial_id, TRIAL_AWAITING_SEAT, False)


def others_run(study: optuna.Study, number: int) -> bool:
    """Whether a trial of ``study`` other than ``number`` runs and waits for nothing at the
    last rung's door (for a seat, or to learn whether it re-runs a parked finalist)."""
    running = storage_of(study).get_all_trials(
        study_id_of(study), deepcopy=False, states=(TrialState.RUNNING,)
    )
    return any(
        t.number != number
        and not t.system_attrs.get(TRIAL_AWAITING_SEAT)
        and not t.system_attrs.get(TRIAL_AWAITING_RERUN)
        for t in running
    )
