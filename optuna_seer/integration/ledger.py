"""The deadline clock and the dollar ledger, kept in the study's storage.

Each trial's account is ``[gpu_seconds, as_of]``: GPU-seconds charged up to the time ``as_of``
(until the first charge: nothing, as of its placement). A running trial keeps accruing
``(now - as_of) × its current GPUs``. The account is written in one of two places, and the
entry with the latest ``as_of`` is the trial's account: ``seer:ledger`` (by executors that
time workers, and when a trial finishes), or the rung-end record the asynchronous pruner
writes (``seer:rung_<r>_end``), which settles the account in the same write as the rung's
value. Every write replaces a whole entry at once, so a crash leaves the last one intact. The
study carries the time its first trial was placed, which starts the deadline clock. Because
both live in storage, every worker process computes the same spend and the same time left,
and a restarted driver picks them up where they were.

All these moments are study time (:mod:`optuna_seer.integration.clock`): callers pass ``now``
read through the study's clock, so a process whose clock is off reads the same ledger.

A trial that beats (``study.optimize`` on the wall clock, see
:mod:`optuna_seer.integration.heartbeat`) is charged while it runs only up to ``grace``
seconds past its last beat, so a worker killed with ``kill -9`` stops costing money within
the grace; once failed as dead (by SEER or Optuna's ``fail_stale_trials``) it is charged up
to its last beat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_seer._optuna import storage_of, study_id_of, trial_id_of
from optuna_seer.integration.keys import (
    STUDY_STARTED_AT,
    TRIAL_HEARTBEAT,
    TRIAL_LEASE,
    TRIAL_LEDGER,
    rung_end_key,
)
from optuna_seer.integration.trial_gpus import (
    ImplicitPlacement,
    gpus_at,
    implicit_placement_in,
    placement_of,
)
from optuna_seer.planning.plan import Plan


@dataclass(frozen=True)
class Ledger:
    """Where a study stands against its plan's deadline and budget at time ``now``."""

    started_at: float
    now: float
    gpu_seconds: float
    deadline_s: float
    budget_dollars: float
    price_per_gpu_second: float

    @property
    def elapsed_s(self) -> float:
        return self.now - self.started_at

    @property
    def remaining_s(self) -> float:
        return self.deadline_s - self.elapsed_s

    @property
    def spent_dollars(self) -> float:
        return self.gpu_seconds * self.price_per_gpu_second

    @property
    def remaining_dollars(self) -> float:
        return self.budget_dollars - self.spent_dollars


def trial_account(
    trial: FrozenTrial, implicit: ImplicitPlacement | None = None
) -> tuple[float, float] | None:
    """``(GPU-seconds charged, as of when)``: the trial's latest settled account, ``None`` for
    trials SEER neither placed nor charged. Accrual starts at placement.

    ``implicit`` is the study's implicit-placement rule (see
    :mod:`optuna_seer.integration.trial_gpus`); every function here that takes it needs it for
    trials placed without a write of their own.
    """
    attrs = trial.system_attrs
    entry = attrs.get(TRIAL_LEDGER)
    placed = placement_of(trial, implicit)
    if placed is None:
        return None if entry is None else (float(entry[0]), float(entry[1]))
    charged, as_of = (0.0, float(placed["placed_at"])) if entry is None else entry
    for rung in range(len(placed["ends"])):
        record = attrs.get(rung_end_key(rung))
        # Charges only grow with time: the latest entry (the larger one on a tie) is current.
        if record is not None and (record["ledger"][1], record["ledger"][0]) > (as_of, charged):
            charged, as_of = record["ledger"]
    return float(charged), float(as_of)


def settled(
    trial: FrozenTrial, now: float, implicit: ImplicitPlacement | None = None
) -> tuple[float, float] | None:
    """The trial's account settled as of ``now`` (what :func:`settle_trial` writes), or
    ``None`` for a trial SEER did not place; writes nothing."""
    entry = trial_account(trial, implicit)
    if entry is None:
        return None
    charged, as_of = entry
    if now > as_of:
        charged += (now - as_of) * current_gpus(trial, implicit)
    return charged, max(now, as_of)


def current_gpus(trial: FrozenTrial, implicit: ImplicitPlacement | None = None) -> int:
    """GPUs ``trial`` holds for its next epoch by its placement (0 if SEER did not place it);
    for a trial that leases its workers (:mod:`optuna_seer.integration.leases`), the workers
    it holds now (0 while it waits for them)."""
    if TRIAL_LEASE in trial.system_attrs:
        lease = trial.system_attrs[TRIAL_LEASE]
        return 0 if lease is None else len(lease["slots"])
    placed = placement_of(trial, implicit)
    return 0 if placed is None else gpus_at(placed, trial.last_step)


def settled_at_stop(trial: FrozenTrial, implicit: ImplicitPlacement | None = None) -> bool:
    """Whether the pruner stopped ``trial`` at a rung end and settled its account in that
    same write (its latest entry is a rung-end record carrying a stop), so closing the
    account when the trial finishes would add nothing but the moments until Optuna's
    ``tell``."""
    attrs = trial.system_attrs
    placed = placement_of(trial, implicit)
    account = trial_account(trial, implicit)
    if placed is None or account is None:
        return False
    for rung in range(len(placed["ends"])):
        record = attrs.get(rung_end_key(rung))
        if record is not None and "stop" in record and float(record["ledger"][1]) == account[1]:
            return True
    return False


def last_beat(trial: FrozenTrial) -> tuple[float, float] | None:
    """``(study time of the trial's last heartbeat, its grace seconds)``, or ``None`` if it
    never beat (see :mod:`optuna_seer.integration.heartbeat`)."""
    beat = trial.system_attrs.get(TRIAL_HEARTBEAT)
    if beat is None:
        return None
    return float(beat[0]), float(beat[1])


def accrues_until(trial: FrozenTrial, now: float) -> float | None:
    """Until when ``trial``'s charge grows past its settled account: ``now`` for a running
    trial (no further than its grace past its last heartbeat, if it beats), its last
    heartbeat for a failed one (a dead trial nobody settled), else ``None``."""
    beat = last_beat(trial)
    if trial.state == TrialState.RUNNING:
        return now if beat is None else min(now, beat[0] + beat[1])
    if trial.state == TrialState.FAIL and beat is not None:
        return beat[0]
    return None


def trial_gpu_seconds(
    trial: FrozenTrial, now: float, implicit: ImplicitPlacement | None = None
) -> float:
    """GPU-seconds ``trial`` has cost by ``now`` (0 for trials SEER did not place). A trial
    the pruner stopped at a rung end costs nothing past that stop, also while its process
    winds down before Optuna's ``tell`` (its account is closed there, see
    :func:`settled_at_stop`)."""
    entry = trial_account(trial, implicit)
    if entry is None:
        return 0.0
    charged, as_of = entry
    if trial.state == TrialState.RUNNING and settled_at_stop(trial, implicit):
        return charged
    until = accrues_until(trial, now)
    if until is not None and until > as_of:
        charged += (until - as_of) * current_gpus(trial, implicit)
    return charged


def spent_gpu_seconds(
    trials: Sequence[FrozenTrial], now: float, implicit: ImplicitPlacement | None = None
) -> float:
    """GPU-seconds all ``trials`` have cost by ``now``."""
    return sum(trial_gpu_seconds(t, now, implicit) for t in trials)


def settle_trial(
    storage: optuna.storages.BaseStorage,
    trial: FrozenTrial,
    now: float,
    implicit: ImplicitPlacement | None = None,
) -> float:
    """Fold a trial's accrued GPU-seconds into its stored charge as of ``now``; returns it.

    Call it when the trial stops so that finished trials stop accruing (the asynchronous
    pruner settles at rung ends inside its rung-end record instead, see :func:`settled`).
    """
    account = settled(trial, now, implicit)
    if account is None:
        return 0.0
    storage.set_trial_system_attr(trial_id_of(trial), TRIAL_LEDGER, list(account))
    return account[0]


def charge_trial(
    storage: optuna.storages.BaseStorage,
    trial: FrozenTrial,
    gpu_seconds: float,
    now: float,
    implicit: ImplicitPlacement | None = None,
) -> None:
    """Add measured ``gpu_seconds`` to a trial's charge (for executors that time workers)."""
    charged, _ = trial_account(trial, implicit) or (0.0, now)
    storage.set_trial_system_attr(trial_id_of(trial), TRIAL_LEDGER, [charged + gpu_seconds, now])


def start_clock(study: optuna.Study, now: float) -> float:
    """Start the study's deadline clock at ``now`` unless it runs already; returns its start."""
    attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
    if STUDY_STARTED_AT in attrs:
        return float(attrs[STUDY_STARTED_AT])
    storage_of(study).set_study_system_attr(study_id_of(study), STUDY_STARTED_AT, now)
    return now


def read_ledger(
    study: optuna.Study, plan: Plan, now: float, trials: Sequence[FrozenTrial] | None = None
) -> Ledger:
    """The study's ledger as of ``now`` (reads the trials unless given)."""
    attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
    started_at = float(attrs.get(STUDY_STARTED_AT, now))
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    return Ledger(
        started_at=started_at,
        now=now,
        gpu_seconds=spent_gpu_seconds(trials, now, implicit_placement_in(attrs)),
        deadline_s=plan.deadline_s,
        budget_dollars=plan.budget_dollars,
        price_per_gpu_second=plan.price_per_gpu_second,
    )
