"""Trial heartbeats for ``study.optimize`` on every storage: a dead worker's trial is failed.

A worker killed with ``kill -9`` tells Optuna nothing: its trial would stay ``RUNNING``
forever, the ledger would keep charging it, and the plan would count it as a configuration
in play. Optuna's own answer, heartbeats, exists only on ``RDBStorage`` (and only when it is
built with ``heartbeat_interval``), and records them where a ``FrozenTrial`` does not show
them. So SEER keeps its own, the same way on every storage (SQLite and other RDBs, journal
files, gRPC proxies, in-memory):

* :func:`on_trial_start` (called by ``SeerSampler.before_trial`` in the process that runs the
  trial) gives the trial its first beat, the system attr ``seer:heartbeat`` = ``[study time,
  grace seconds]``, which the sampler writes at once in the one write it makes at a trial's
  start (with the trial's placement or refusal where it writes one), and hands the trial to
  one background thread per process, which rewrites it every ``interval_s`` for every trial
  the process runs; :func:`on_trial_end` (``SeerSampler.after_trial``, before Optuna
  finishes the trial) stops it.
* Each beat carries the study's grace, so whoever reads a trial knows when it is dead: no
  beat for ``grace_s`` of study time (:mod:`optuna_seer.integration.clock`, so a worker
  minutes off is neither taken for dead nor kept alive).
* :func:`fail_dead_trials` (run at every trial start, as Optuna runs ``fail_stale_trials``)
  settles a dead trial's account at its last beat, records why it stopped and tells the
  storage ``FAIL``; then the storage's ``heartbeat_stale_trial_callback`` runs, if it has
  one (e.g. Optuna's ``RetryFailedTrialCallback``). A running trial it finds without any
  beat (its process killed between the trial's start and its first beat) gets its first
  sighting written as its beat, in study time: its process, if alive, overwrites it within
  a beat, else the trial is dead a grace later and charged up to that sighting (an upper
  bound: it died before; nothing where no placement of it exists, as on SQLite under Optuna
  4, whose start times cannot stand for one). The ledger
  (:mod:`optuna_seer.integration.ledger`) charges a running trial no further than
  ``grace_s`` past its last beat, and a failed one no further than its last beat (also when
  Optuna's own ``fail_stale_trials`` failed it), so its GPUs stop costing money.

The interval and grace are the study's (``seer:heartbeat``), stored by the first process
that runs a trial: those of an ``RDBStorage(heartbeat_interval=..., grace_period=...)``,
else :data:`DEFAULT` (change it with :func:`configure` before the first trial). Each process
reads them, and whether an ``ElasticTuner`` runs the study, once per study: neither changes
once a trial has started. Trials an
``ElasticTuner`` runs do not beat: its driver holds them across launches and has its own
heartbeat and lease (:mod:`optuna_seer.execution.driver_lock`). Neither do trials on a
simulated clock (a replay).
"""

from __future__ import annotations

from collections.abc import Sequence
import contextlib
from dataclasses import dataclass
import math
import threading
import time
from typing import Any, NamedTuple

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_seer._logging import get_logger
from optuna_seer._optuna import (
    UpdateFinishedTrialError,
    set_trial_attrs,
    storage_of,
    study_id_of,
    trial_id_of,
    unwrap_storage,
)
from optuna_seer.integration.clock import Clock, StudyClock, clock_of, is_wall_clock
from optuna_seer.integration.keys import (
    STUDY_EXECUTOR_PROGRESS,
    STUDY_HEARTBEAT,
    TRIAL_HEARTBEAT,
    TRIAL_STOP_REASON,
)
from optuna_seer.integration.ledger import last_beat, settle_trial
from optuna_seer.integration.trial_gpus import implicit_placement, implicit_placement_in

_logger = get_logger(__name__)


@dataclass(frozen=True)
class HeartbeatSettings:
    """How often a running trial beats, and after how long without a beat it is dead.

    Example:
        >>> HeartbeatSettings(interval_s=10, grace_s=5)
        Traceback (most recent call last):
        ...
        ValueError: grace_s=5 must be at least twice interval_s=10 (a beat may be late).
    """

    interval_s: float = 10.0
    grace_s: float = 30.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise ValueError(f"interval_s={self.interval_s!r} must be a positive number.")
        if not (math.isfinite(self.grace_s) and self.grace_s >= 2 * self.interval_s):
            raise ValueError(
                f"grace_s={self.grace_s!r} must be at least twice interval_s="
                f"{self.interval_s!r} (a beat may be late)."
            )


DEFAULT = HeartbeatSettings()
"""The settings a study gets when its storage has no Optuna heartbeat configured."""


def configure(interval_s: float, grace_s: float | None = None) -> None:
    """Set :data:`DEFAULT` (``grace_s``: three intervals unless given) for studies that have
    none stored yet; a study keeps the settings its first trial stored."""
    global DEFAULT
    DEFAULT = HeartbeatSettings(interval_s, 3 * interval_s if grace_s is None else grace_s)


def optuna_settings(storage: optuna.storages.BaseStorage) -> HeartbeatSettings | None:
    """The interval and grace of an ``RDBStorage`` built with ``heartbeat_interval``."""
    inner = unwrap_storage(storage)
    if not isinstance(inner, optuna.storages.RDBStorage) or not inner.heartbeat_interval:
        return None
    interval = float(inner.heartbeat_interval)
    grace = inner.grace_period
    return HeartbeatSettings(interval, max(2 * interval, float(grace or 2 * interval)))


def settings_of(study: optuna.Study, attrs: dict[str, Any] | None = None) -> HeartbeatSettings:
    """The study's heartbeat settings; stores them if it has none (see the module)."""
    if attrs is None:
        attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
    stored = attrs.get(STUDY_HEARTBEAT)
    if stored is not None:
        return HeartbeatSettings(float(stored["interval_s"]), float(stored["grace_s"]))
    settings = optuna_settings(storage_of(study)) or DEFAULT
    storage_of(study).set_study_system_attr(
        study_id_of(study),
        STUDY_HEARTBEAT,
        {"interval_s": settings.interval_s, "grace_s": settings.grace_s},
    )
    return settings


def is_dead(trial: FrozenTrial, now: float) -> bool:
    """Whether ``trial`` runs but has not beaten for its grace period by study time ``now``."""
    beat = last_beat(trial)
    return trial.state == TrialState.RUNNING and beat is not None and now - beat[0] > beat[1]


class _Beater:
    """One daemon thread per process that rewrites the beat of every trial it runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trials: dict[
            tuple[int, int], tuple[optuna.storages.BaseStorage, int, StudyClock, float]
        ] = {}
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._interval = DEFAULT.interval_s
        self._due = -math.inf  # monotonic time of the next beat of every trial

    def add(
        self,
        storage: optuna.storages.BaseStorage,
        trial_id: int,
        clock: StudyClock,
        settings: HeartbeatSettings,
    ) -> None:
        """Beat for the trial from the next beat of every trial on (at most one interval
        away; its first beat is written as it starts, see :func:`on_trial_start`)."""
        with self._lock:
            key = (id(storage), trial_id)
            self._trials[key] = (storage, trial_id, clock, settings.grace_s)
            if settings.interval_s < self._interval:
                self._interval = settings.interval_s
                self._due = min(self._due, time.monotonic() + self._interval)
                self._wake.notify()
            if self._thread is None or not self._thread.is_alive():
                self._due = time.monotonic() + self._interval
                self._thread = threading.Thread(
                    target=self._run, name="seer-trial-heartbeat", daemon=True
                )
                self._thread.start()

    def remove(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        """Stop beating. A beat already being written may still land before the trial
        finishes (a moment's later beat, harmless) or be refused after (ignored)."""
        with self._lock:
            self._trials.pop((id(storage), trial_id), None)

    def _run(self) -> None:
        while True:
            with self._lock:
                self._wake.wait(timeout=max(self._due - time.monotonic(), 0.0))
                if time.monotonic() < self._due:
                    continue
                self._due = time.monotonic() + self._interval
                beating = list(self._trials.items())
            # Written without the lock: a slow or unreachable storage delays no trial's
            # start or end, only its own beats.
            for key, (storage, trial_id, clock, grace) in beating:
                try:
                    _beat(storage, trial_id, clock, grace)
                except UpdateFinishedTrialError:
                    with self._lock:  # finished here, or failed by another process
                        self._trials.pop(key, None)
                except Exception as exc:  # a storage hiccup: the next beat may pass
                    _logger.warning("trial (id %d): heartbeat not written: %s", trial_id, exc)


def _beat(
    storage: optuna.storages.BaseStorage, trial_id: int, clock: StudyClock, grace_s: float
) -> None:
    set_trial_attrs(storage, trial_id, system={TRIAL_HEARTBEAT: [clock.now(), grace_s]})


_BEATER = _Beater()
_SCAN_EVERY_S = 1.0
_LAST_SCAN: dict[tuple[int, int], float] = {}


_studies: dict[tuple[int, int], tuple[optuna.storages.BaseStorage, HeartbeatSettings | None]] = {}
_studies_lock = threading.Lock()


def _beating_settings(study: optuna.Study) -> HeartbeatSettings | None:
    """The study's heartbeat settings, ``None`` if an ``ElasticTuner`` runs it (its trials do
    not beat); read (and stored, if new) once per study and process: neither changes once a
    trial has started (an ``ElasticTuner`` refuses a study it did not start)."""
    storage = storage_of(study)
    key = (id(storage), study_id_of(study))
    with _studies_lock:
        known = _studies.get(key)
    if known is not None and known[0] is storage:
        return known[1]
    attrs = storage.get_study_system_attrs(study_id_of(study))
    settings = None if STUDY_EXECUTOR_PROGRESS in attrs else settings_of(study, attrs)
    with _studies_lock:
        _studies[key] = (storage, settings)  # the storage is held, so its id is not reused
    return settings


def _known_settings(study: optuna.Study) -> HeartbeatSettings | None:
    """The settings :func:`_beating_settings` found, if this process has started a trial of
    ``study`` (``None`` otherwise, and for a study an ``ElasticTuner`` runs)."""
    storage = storage_of(study)
    with _studies_lock:
        known = _studies.get((id(storage), study_id_of(study)))
    return known[1] if known is not None and known[0] is storage else None


class TrialStart(NamedTuple):
    """What :func:`on_trial_start` did and leaves to its caller."""

    failed: list[int]
    """Numbers of the dead trials it failed."""
    first_beat: dict[str, Any]
    """The trial's first beat (a system attr), for the caller to write with its own writes
    at the trial's start (one transaction); empty when the trial does not beat."""


def on_trial_start(
    study: optuna.Study,
    trial: FrozenTrial | optuna.Trial,
    local: Clock | None = None,
    trials: Sequence[FrozenTrial] | None = None,
) -> TrialStart:
    """Fail the study's dead trials, then beat for ``trial`` (see the module): its first beat
    is returned for the caller to write at once, the heartbeat thread writes the next ones.
    Nothing happens on a simulated clock (``local`` not the wall clock) or in a study an
    ``ElasticTuner`` runs. ``trials``: the study's trials as just read
    (:func:`~optuna_seer._optuna.fresh_trials`), which the scan then does not read again.

    Costs the trial's start no storage access but the first one per study and process and a
    scan at most once a second (the first beat is the caller's write)."""
    if local is not None and not is_wall_clock(local):
        return TrialStart([], {})
    settings = _beating_settings(study)
    if settings is None:
        return TrialStart([], {})
    storage = storage_of(study)
    clock = clock_of(storage)
    # Scanning for dead trials reads every running trial: at most once a second (or a
    # quarter interval) per study and process, so a burst of trial starts pays it once; a
    # dead trial's grace is seconds, so it is still noticed within one scan of it.
    key = (id(storage), study_id_of(study))
    started = time.monotonic()
    failed: list[int] = []
    if started - _LAST_SCAN.get(key, -math.inf) >= min(_SCAN_EVERY_S, settings.interval_s / 4):
        _LAST_SCAN[key] = started
        failed = fail_dead_trials(study, clock.now(), trials=trials, starting=trial_id_of(trial))
    _BEATER.add(storage, trial_id_of(trial), clock, settings)
    return TrialStart(failed, {TRIAL_HEARTBEAT: [clock.now(), settings.grace_s]})


def on_trial_end(study: optuna.Study, trial: FrozenTrial | optuna.Trial) -> None:
    """Stop beating for ``trial`` (before Optuna finishes it)."""
    _BEATER.remove(storage_of(study), trial_id_of(trial))


def fail_dead_trials(
    study: optuna.Study,
    now: float | None = None,
    attrs: dict[str, Any] | None = None,
    *,
    trials: Sequence[FrozenTrial] | None = None,
    starting: int | None = None,
) -> list[int]:
    """Fail every trial of ``study`` that runs without a beat for its grace by study time
    ``now``: its account is settled at its last beat and its stop reason says so. Returns
    their numbers (a trial another process failed first is not among them). ``trials``: the
    study's trials read just now, else they are read.

    A running trial without any beat, in a study whose trials beat (this process started
    one), gets ``now`` written as its beat: the first sighting, which its process overwrites
    within a beat if it lives (see the module); not the trial this process is starting
    (``starting``, its id), whose first beat this process writes."""
    storage = storage_of(study)
    if now is None:
        now = clock_of(storage).now()
    implicit = (
        implicit_placement(storage, study_id_of(study))
        if attrs is None
        else implicit_placement_in(attrs)
    )
    settings = _known_settings(study)
    callback = getattr(storage, "get_heartbeat_stale_trial_callback", lambda: None)()
    failed = []
    if trials is None:
        trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in trials:
        if trial.state != TrialState.RUNNING:
            continue
        beat = last_beat(trial)
        if beat is None and settings is not None and trial_id_of(trial) != starting:
            _sight(storage, trial, now, settings.grace_s)
        if beat is None or not is_dead(trial, now):
            continue
        trial_id = trial_id_of(trial)
        try:
            settle_trial(storage, trial, beat[0], implicit)
            storage.set_trial_system_attr(
                trial_id,
                TRIAL_STOP_REASON,
                f"dead: no heartbeat for {now - beat[0]:.0f} s (grace {beat[1]:g} s); its "
                "process was killed or lost, charged up to its last heartbeat",
            )
            if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # another process failed (or its own finished) it first
        _logger.warning(
            "trial %d failed: its process stopped beating %.0f s ago", trial.number, now - beat[0]
        )
        failed.append(trial.number)
        if callback is not None:
            callback(study, storage.get_trial(trial_id))
    return failed


def _sight(
    storage: optuna.storages.BaseStorage, trial: FrozenTrial, now: float, grace_s: float
) -> None:
    """Write a beat-less running trial's first sighting as its beat (see the module)."""
    with contextlib.suppress(UpdateFinishedTrialError):  # it finished meanwhile
        storage.set_trial_system_attr(trial_id_of(trial), TRIAL_HEARTBEAT, [now, grace_s])


class DeadTrialScan:
    """:func:`fail_dead_trials` for a loop that waits on other trials (for workers, for a
    seat in the last rung): call it each turn and it scans at most every ``every_s``
    seconds, the first time at once. A killed process's trial would otherwise hold its
    workers, or keep the door shut, for as long as the waiting trial waits."""

    def __init__(self, study: optuna.Study, every_s: float = 5.0) -> None:
        self._study = study
        self._every_s = every_s
        self._scanned = -math.inf

    def __call__(self) -> None:
        if time.monotonic() - self._scanned >= self._every_s:
            self._scanned = time.monotonic()
            fail_dead_trials(self._study)
