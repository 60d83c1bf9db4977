"""Worker leases for ``study.optimize``: a pool of workers shared through the study's storage.

On a pool of ``size`` workers (this machine's GPUs, else CPU slots; see
:func:`optuna_seer.rungs`), every trial leases the workers of its current rung before it
trains, and returns them when the rung ends, so a survivor's later rungs can run on the
plan's larger worker count while the study never uses more workers than the pool has. The
leases live where every thread and process of the study already looks: the trial's system
attr ``seer:lease`` = ``{"pool": name, "slots": [...], "rung": r, "at": study time}``
(``None`` once returned). No lock server is needed:

* **Never more than the pool, never a slot twice.** A trial claims free slots by writing its
  lease, then reads the other leases again; if any other trial claims one of its slots, it
  withdraws its claim and tries again later (with jitter). Two claims that overlap cannot
  both survive: whichever of the two re-reads last sees the other's claim. A lease that
  survived its re-read is held; a later claimant sees it and withdraws.
* **Returned on every end.** Only ``RUNNING`` trials hold leases: a pruned, completed or
  failed trial holds none, and a killed process's trial is failed by the heartbeat
  (:mod:`optuna_seer.integration.heartbeat`), which returns its lease with it.
* **Charged while held.** A trial's cost account restarts when it is granted workers, so
  the time it waited for them costs nothing; it accrues from the grant (start-up included)
  on the rung's workers (:mod:`optuna_seer.integration.ledger`).
* **One pool size per pool.** The first process that leases from a pool records its size
  (``seer:pool:<name>``); a process that claims another size is refused by name.

Example:
    >>> import optuna
    >>> study = optuna.create_study()
    >>> trial = study.ask()
    >>> acquire(study, trial.number, pool="local", size=2, workers=2, rung=0, now=0.0)
    (0, 1)
    >>> acquire(study, study.ask().number, pool="local", size=2, workers=1, rung=0, now=0.0)
    >>> release(study, trial.number, now=5.0)
    >>> leased(study, "local")
    {}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_seer._optuna import storage_of, study_id_of
from optuna_seer.integration.keys import TRIAL_LEASE
from optuna_seer.integration.ledger import charge_trial, settle_trial
from optuna_seer.integration.trial_gpus import implicit_placement, placement_of

_POOL_PREFIX = "seer:pool:"


class LeaseError(ValueError):
    """A lease that can never be granted, or one asked for a trial that cannot hold it."""


def pool_key(pool: str) -> str:
    """The study attr recording the size of ``pool``."""
    return _POOL_PREFIX + pool


def lease_of(trial: FrozenTrial) -> dict[str, Any] | None:
    """The lease ``trial`` holds (``None``: none, or the trial has finished)."""
    if trial.state != TrialState.RUNNING:
        return None
    lease: dict[str, Any] | None = trial.system_attrs.get(TRIAL_LEASE)
    return lease


def holds_workers(trial: FrozenTrial) -> bool:
    """Whether ``trial`` (running) holds granted workers now, not only a queued request."""
    return bool((lease_of(trial) or {}).get("slots"))


def leased(study: optuna.Study, pool: str, *, exclude: int | None = None) -> dict[int, int]:
    """The slots of ``pool`` that running trials hold (or claim), as ``{slot: trial number}``;
    the trial numbered ``exclude`` is left out."""
    trials = storage_of(study).get_all_trials(
        study_id_of(study), deepcopy=False, states=(TrialState.RUNNING,)
    )
    return _held(trials, pool, exclude)


def _held(trials: Iterable[FrozenTrial], pool: str, exclude: int | None) -> dict[int, int]:
    taken: dict[int, int] = {}
    for trial in trials:
        lease = lease_of(trial)
        if trial.number == exclude or lease is None or lease.get("pool") != pool:
            continue
        for slot in lease.get("slots", ()):
            taken[int(slot)] = trial.number
    return taken


def check_pool(study: optuna.Study, pool: str, size: int) -> None:
    """Record ``pool``'s size in the study, or check it against the recorded one.

    Raises:
        LeaseError: Another process of the study leases from ``pool`` with another size.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise LeaseError(f"pool size={size!r} must be a positive int (workers in the pool).")
    if not isinstance(pool, str) or not pool:
        raise LeaseError(f"pool={pool!r} must be a non-empty name, e.g. the host name.")
    storage, study_id = storage_of(study), study_id_of(study)
    recorded = storage.get_study_system_attrs(study_id).get(pool_key(pool))
    if recorded is None:
        storage.set_study_system_attr(study_id, pool_key(pool), size)
    elif int(recorded) != size:
        raise LeaseError(
            f"pool {pool!r} has {recorded} workers in study {study.study_name!r}, but this "
            f"process offers {size}: every process sharing a pool must give it the same size "
            "(or name its own pool, e.g. per host)."
        )


def acquire(
    study: optuna.Study,
    number: int,
    *,
    pool: str,
    size: int,
    workers: int,
    rung: int,
    now: float,
) -> tuple[int, ...] | None:
    """Try once to lease ``workers`` slots of ``pool`` for trial ``number``.

    Returns the slots, or ``None`` when not enough are free now (or another trial claimed
    the same ones at the same moment): try again later. A trial that waits is queued (its
    lease attr records the workers it waits for and since when): a request is granted only if
    the slots left after it still cover what the trials queued before it wait for (a later
    rung first, then the earlier wait), so survivors waiting for several workers are not
    starved by new configurations that need one. A trial that already holds a lease
    returns it first.

    Raises:
        LeaseError: ``workers`` is more than the pool has (it could never be granted), or
            trial ``number`` is not running.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise LeaseError(f"workers={workers!r} must be a positive int.")
    if workers > size:
        raise LeaseError(
            f"trial {number} asks for {workers} workers but pool {pool!r} has {size}: plan "
            f"with ClusterLimits(max_gpus={size}) so no rung needs more."
        )
    storage = storage_of(study)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id_of(study), number)
    trial = storage.get_trial(trial_id)
    if trial.state != TrialState.RUNNING:
        raise LeaseError(
            f"trial {number} is {trial.state.name}: only a running trial can lease workers."
        )
    running = storage.get_all_trials(
        study_id_of(study), deepcopy=False, states=(TrialState.RUNNING,)
    )
    taken = _held(running, pool, number)
    free = [slot for slot in range(size) if slot not in taken]
    waiting = _waiting(trial.system_attrs.get(TRIAL_LEASE), pool, rung)
    since = now if waiting is None else float(waiting["at"])
    ahead = _needed_ahead(running, pool, number, (-rung, since, number))
    if len(free) - workers < min(ahead, size - workers):
        if waiting is None:
            # Waiting, it holds nothing, so it costs nothing (see the ledger); its place in
            # the queue is kept, so a larger request is not starved by smaller later ones.
            wait: dict[str, Any] = {
                "pool": pool,
                "slots": [],
                "wait": workers,
                "rung": rung,
                "at": now,
            }
            storage.set_trial_system_attr(trial_id, TRIAL_LEASE, wait)
        return None
    mine = tuple(free[:workers])
    storage.set_trial_system_attr(trial_id, TRIAL_LEASE, _lease(pool, mine, rung, now))
    # Read again: a claim made at the same moment by another trial shows now (see above).
    if set(leased(study, pool, exclude=number)) & set(mine):
        storage.set_trial_system_attr(trial_id, TRIAL_LEASE, None)
        return None
    # The trial costs money while it holds workers: its account restarts now, so the time it
    # waited for them is not charged (see the ledger); a lease it held until now (it asked
    # again without returning it) is charged up to now first.
    implicit = implicit_placement(storage, study_id_of(study))
    if placement_of(trial, implicit) is not None:
        if holds_workers(trial):
            settle_trial(storage, trial, now, implicit)
        else:
            charge_trial(storage, trial, 0.0, now, implicit)
    return mine


def _waiting(lease: Any, pool: str, rung: int) -> dict[str, Any] | None:
    """The trial's own wait record for ``rung`` in ``pool``, if it is already queued."""
    queued = isinstance(lease, dict) and lease.get("pool") == pool and lease.get("wait")
    if queued and int(lease.get("rung", -1)) == rung:
        return dict(lease)
    return None


def _needed_ahead(
    running: Iterable[FrozenTrial], pool: str, number: int, mine: tuple[float, float, int]
) -> int:
    """Workers that the trials queued before ``mine`` in ``pool`` wait for: a later rung
    first, then the earlier wait, then the lower trial number."""
    needed = 0
    for trial in running:
        lease = lease_of(trial)
        if trial.number == number or lease is None or lease.get("pool") != pool:
            continue
        if lease.get("slots") or not lease.get("wait"):
            continue
        theirs = (-int(lease["rung"]), float(lease["at"]), trial.number)
        if theirs < mine:
            needed += int(lease["wait"])
    return needed


def release(study: optuna.Study, number: int, *, now: float) -> None:
    """Return the workers trial ``number`` holds (a no-op if it holds none or has ended),
    charging them to its account up to ``now`` (study time) first: once returned, they no
    longer accrue, so what they cost must be settled before (a crash between the two writes
    leaves the lease held and its account settled: it accrues on from there, as before)."""
    storage = storage_of(study)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id_of(study), number)
    trial = storage.get_trial(trial_id)
    if trial.state == TrialState.RUNNING and trial.system_attrs.get(TRIAL_LEASE) is not None:
        if holds_workers(trial):
            settle_trial(storage, trial, now, implicit_placement(storage, study_id_of(study)))
        storage.set_trial_system_attr(trial_id, TRIAL_LEASE, None)


def _lease(pool: str, slots: tuple[int, ...], rung: int, now: float) -> Mapping[str, Any]:
    return {"pool": pool, "slots": list(slots), "rung": rung, "at": now}
