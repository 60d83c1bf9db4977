"""The run journal: what an ElasticTuner keeps in the study's storage to be resumed.

Every read and write of the run's progress, its launches, the launches in flight, the
driver's heartbeat and pause, the trials' placements, stop reasons and charges goes through
:class:`RunJournal`, each retried the same way (:data:`STORAGE_RETRIES`, exponential backoff
with full jitter) while the storage is locked or unreachable, then
:class:`~optuna_seer.storage.retry.StorageUnavailableError`. Everything lives in study and
trial system attrs (:mod:`optuna_seer.integration.keys`), so a driver started again on the
same storage finds it.

:class:`Progress` is the study-level record (the rung the run is at, the re-planned rungs,
the rungs done, whether it finished); each trial keeps its finished launches
(:class:`~optuna_seer.execution.results.LaunchRecord`) and the launch it has in flight.

The journal speaks the driver's clock (its backend's ``now()``) and stores study time
(:mod:`optuna_seer.integration.clock`): every moment it writes is shifted by the driver's
offset to the storage's clock, measured once per run (the one offset its pruner and sampler
use for the same clock, :func:`~optuna_seer.integration.clock.clock_of`), and every moment
it reads is shifted back. A driver resumed on a machine whose clock is minutes off
therefore sees the study's start, the dead driver's heartbeat and its launches in flight
where they really were, and charges and counts the deadline as the first driver would have.
(Launch and rung records hold times relative to the study's start, which need no shift.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

import optuna
from optuna.trial import FrozenTrial

from optuna_seer._optuna import storage_of, study_id_of, trial_id_of
from optuna_seer._secrets import scrub
from optuna_seer.execution.results import LaunchRecord, RungRecord
from optuna_seer.integration.clock import Clock, clock_of
from optuna_seer.integration.keys import (
    STUDY_DRIVER_ALIVE,
    STUDY_DRIVER_LEASE,
    STUDY_DRIVER_PAUSED,
    STUDY_EXECUTOR_PROGRESS,
    STUDY_PLAN,
    TRIAL_BEYOND_PLAN,
    TRIAL_IN_FLIGHT,
    TRIAL_LAUNCHES,
    TRIAL_LEDGER,
    TRIAL_PLACEMENT,
    TRIAL_STOP_REASON,
)
from optuna_seer.integration.ledger import Ledger, charge_trial, read_ledger, start_clock
from optuna_seer.integration.trial_gpus import ImplicitPlacement, implicit_placement
from optuna_seer.planning.plan import Plan, Rung
from optuna_seer.storage.retry import RetryPolicy, call_with_retries, is_transient_storage_error

T = TypeVar("T")

STORAGE_RETRIES = RetryPolicy(attempts=6, base_s=0.5, max_s=8.0)
"""How every journal read and write is retried while the storage is locked or unreachable."""
HEARTBEAT_SECONDS = 5.0
"""How often the driver records that it is alive while launches run; a killed driver's
launches on a backend whose launches end with it are charged up to two periods past it."""
_NOTES_KEPT, _NOTE_CHARS, _MESSAGE_CHARS = 50, 500, 500  # an RDB Text column: < 64 KB


@dataclass(frozen=True)
class Progress:
    """Where a run stands, as the journal stores it (``seer:executor_progress``).

    Attributes:
        rung: The rung it runs (or ran last).
        rungs: The rungs, as re-planned so far.
        slots: The backend's slots (a resumed run must have as many).
        sampled: Whether every configuration was sampled.
        done: The rungs done (their launches are kept per trial, not here).
        notes: What the run said so far (the last ones).
        retried: Launches retried.
        fallbacks: Launches that resumed from an earlier checkpoint than they were given.
        finished_at: When it finished (backend clock), or ``None``.
        stopped: The error that stopped it, or ``None``.
    """

    rung: int
    rungs: tuple[Rung, ...]
    slots: int | None
    sampled: bool = True
    done: tuple[RungRecord, ...] = ()
    notes: tuple[str, ...] = ()
    retried: int = 0
    fallbacks: int = 0
    finished_at: float | None = None
    stopped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stored form (JSON-able)."""

        def rung_done(record: RungRecord) -> dict[str, Any]:
            # launches are kept per trial (seer:launches), not twice
            return {k: v for k, v in asdict(record).items() if k != "launches"}

        return {
            "rung": self.rung,
            "rungs": [asdict(r) for r in self.rungs],
            "slots": self.slots,
            "sampled": self.sampled,
            "done": [rung_done(r) for r in self.done],
            "notes": [scrub(note)[:_NOTE_CHARS] for note in self.notes[-_NOTES_KEPT:]],
            "retried": self.retried,
            "fallbacks": self.fallbacks,
            "finished_at": self.finished_at,
            "stopped": self.stopped,
        }

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> Progress:
        """Read back :meth:`to_dict`'s form; the rungs done come without their launches."""
        finished_at = stored.get("finished_at")
        slots = stored.get("slots")
        return cls(
            rung=int(stored["rung"]),
            rungs=tuple(Rung(**r) for r in stored["rungs"]),
            slots=None if slots is None else int(slots),
            sampled=bool(stored.get("sampled", True)),
            done=tuple(_rung_record(d) for d in stored.get("done", [])),
            notes=tuple(stored.get("notes", [])),
            retried=int(stored.get("retried", 0)),
            fallbacks=int(stored.get("fallbacks", 0)),
            finished_at=None if finished_at is None else float(finished_at),
            stopped=stored.get("stopped"),
        )


def _rung_record(stored: Mapping[str, Any]) -> RungRecord:
    return RungRecord(
        planned=Rung(**stored["planned"]),
        started_at=float(stored["started_at"]),
        finished_at=float(stored["finished_at"]),
        trials=tuple(stored["trials"]),
        promoted=tuple(stored["promoted"]),
        eliminated=tuple(stored["eliminated"]),
        gpu_seconds=float(stored["gpu_seconds"]),
        launches=(),
    )


@dataclass(frozen=True)
class InFlight:
    """A trial's running launch as the journal keeps it, for a driver that resumes."""

    rung: int
    workers: int
    started_at: float
    launch: int
    """How many launches the trial had finished when this one started."""

    @classmethod
    def of(cls, trial: FrozenTrial) -> InFlight | None:
        stored = trial.system_attrs.get(TRIAL_IN_FLIGHT)
        if stored is None:
            return None
        return cls(
            rung=int(stored["rung"]),
            workers=int(stored["workers"]),
            started_at=float(stored["started_at"]),
            launch=int(stored["launch"]),
        )


def launches_of(trial: FrozenTrial) -> list[LaunchRecord]:
    """The finished launches the journal kept for ``trial``, oldest first."""
    return [
        LaunchRecord(**{**r, "lanes": tuple(r["lanes"])})
        for r in trial.system_attrs.get(TRIAL_LAUNCHES, [])
    ]


def charged_of(trial: FrozenTrial) -> tuple[float, float]:
    """``(worker-seconds charged, until when)`` in ``trial``'s ledger; zeros if none yet."""
    charged = trial.system_attrs.get(TRIAL_LEDGER, [0.0, 0.0])
    return float(charged[0]), float(charged[1])


@dataclass
class RunJournal:
    """Reads and writes of one study's run state, each retried with :attr:`policy`.

    ``clock`` is the driver's clock (the backend's ``now``); ``None``: the wall clock.
    """

    study: optuna.Study
    policy: RetryPolicy = field(default=STORAGE_RETRIES)
    clock: Clock | None = None

    def __post_init__(self) -> None:
        self._storage = storage_of(self.study)
        self._study_id = study_id_of(self.study)
        # The offset the pruner and the sampler on the same clock use (one per process).
        self._clock = clock_of(self._storage, self.clock)
        self._offset: float | None = None

    @property
    def storage(self) -> optuna.storages.BaseStorage:
        return self._storage

    def offset(self) -> float:
        """Study time minus the driver's clock, measured once (0 if they agree in a second)."""
        if self._offset is None:
            self._offset = self._retrying("read the storage's clock", self._clock.offset)
        return self._offset

    def to_study(self, local: float) -> float:
        return local + self.offset()

    def to_local(self, stored: float) -> float:
        return stored - self.offset()

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        return call_with_retries(
            call, what=what, transient=is_transient_storage_error, policy=self.policy
        )

    # ----------------------------------------------------------------- the study
    def study_attrs(self) -> dict[str, Any]:
        return self._retrying(
            "read the study's attributes",
            lambda: self._storage.get_study_system_attrs(self._study_id),
        )

    def progress(self) -> Progress | None:
        """The run's stored progress; ``None`` if no ElasticTuner started this study."""
        stored = self.study_attrs().get(STUDY_EXECUTOR_PROGRESS)
        if stored is None:
            return None
        progress = Progress.from_dict(stored)
        if progress.finished_at is None:
            return progress
        return replace(progress, finished_at=self.to_local(progress.finished_at))

    def stored_plan(self) -> Plan | None:
        """The plan the study was created with (the pruner stores it), if any."""
        stored = self.study_attrs().get(STUDY_PLAN)
        return None if stored is None else Plan.from_dict(stored)

    def save_progress(self, progress: Progress) -> None:
        if progress.finished_at is not None:
            progress = replace(progress, finished_at=self.to_study(progress.finished_at))
        value = progress.to_dict()
        self._retrying(
            "save the executor's progress",
            lambda: self._storage.set_study_system_attr(
                self._study_id, STUDY_EXECUTOR_PROGRESS, value
            ),
        )

    def start_clock(self, now: float) -> float:
        """Start the study's deadline clock at ``now`` unless it runs already; its start."""
        at = self.to_study(now)
        return self.to_local(
            self._retrying("start the study's clock", lambda: start_clock(self.study, at))
        )

    def heartbeat(self, now: float) -> None:
        """Record that the driver is alive at ``now``."""
        at = self.to_study(now)
        self._retrying(
            "record the driver's heartbeat",
            lambda: self._storage.set_study_system_attr(self._study_id, STUDY_DRIVER_ALIVE, at),
        )

    def mark_paused(self, now: float) -> None:
        """Record that Ctrl-C paused the driver at ``now`` (its launches stopped then)."""
        at = self.to_study(now)
        self._retrying(
            "record the driver's pause",
            lambda: self._storage.set_study_system_attr(self._study_id, STUDY_DRIVER_PAUSED, at),
        )

    def driver_marks(self) -> tuple[float | None, float | None]:
        """``(last heartbeat, last pause)`` of the study's driver, ``None`` where never."""
        attrs = self.study_attrs()
        beat, paused = attrs.get(STUDY_DRIVER_ALIVE), attrs.get(STUDY_DRIVER_PAUSED)
        return (
            None if beat is None else self.to_local(float(beat)),
            None if paused is None else self.to_local(float(paused)),
        )

    def lease(self) -> Any:
        """The study's driver lease as stored (:mod:`optuna_seer.execution.driver_lock`)."""
        return self.study_attrs().get(STUDY_DRIVER_LEASE)

    def set_lease(self, lease: Mapping[str, Any] | None) -> None:
        value = None if lease is None else dict(lease)
        self._retrying(
            "write the study's driver lease",
            lambda: self._storage.set_study_system_attr(self._study_id, STUDY_DRIVER_LEASE, value),
        )

    def implicit(self) -> ImplicitPlacement | None:
        """The study's implicit-placement rule (trials placed without a write of their own)."""
        return self._retrying(
            "read the study's placement rule",
            lambda: implicit_placement(self._storage, self._study_id),
        )

    def ledger(self, plan: Plan, now: float, trials: Sequence[FrozenTrial] | None = None) -> Ledger:
        at = self.to_study(now)
        return self._retrying(
            "read the study's ledger", lambda: read_ledger(self.study, plan, at, trials)
        )

    # ----------------------------------------------------------------- the trials
    def trials(self) -> list[FrozenTrial]:
        return self._retrying(
            "read the study's trials", lambda: self.study.get_trials(deepcopy=False)
        )

    def trial(self, trial_id: int) -> FrozenTrial:
        return self._retrying(
            f"read trial (id {trial_id})", lambda: self._storage.get_trial(trial_id)
        )

    def beyond_plan(self, trial_id: int) -> bool:
        """Whether the sampler marked this new trial as one more than the plan's width."""
        attrs = self._retrying(
            f"read trial (id {trial_id})'s attributes",
            lambda: self._storage.get_trial_system_attrs(trial_id),
        )
        return bool(attrs.get(TRIAL_BEYOND_PLAN))

    def in_flight(self, trial: FrozenTrial) -> InFlight | None:
        """``trial``'s launch in flight, its start on the driver's clock."""
        launch = InFlight.of(trial)
        if launch is None:
            return None
        return replace(launch, started_at=self.to_local(launch.started_at))

    def charged(self, trial: FrozenTrial) -> tuple[float, float]:
        """:func:`charged_of` with the time on the driver's clock (zeros if never charged)."""
        amount, as_of = charged_of(trial)
        return amount, (self.to_local(as_of) if as_of else as_of)

    def set_in_flight(self, trial_id: int, launch: InFlight) -> None:
        value = asdict(replace(launch, started_at=self.to_study(launch.started_at)))
        self._retrying(
            f"record trial (id {trial_id})'s launch in flight",
            lambda: self._storage.set_trial_system_attr(trial_id, TRIAL_IN_FLIGHT, value),
        )

    def clear_in_flight(self, trial_id: int) -> None:
        self._retrying(
            f"record trial (id {trial_id})'s launch",
            lambda: self._storage.set_trial_system_attr(trial_id, TRIAL_IN_FLIGHT, None),
        )

    def record_launch(self, trial: FrozenTrial, launch: LaunchRecord) -> None:
        """Append ``launch`` to the launches ``trial`` (as read) kept; nothing is in flight."""
        kept = trial.system_attrs.get(TRIAL_LAUNCHES, [])
        record = {
            **asdict(launch),
            "lanes": list(launch.lanes),
            "message": scrub(launch.message)[-_MESSAGE_CHARS:],
        }
        trial_id = trial_id_of(trial)
        self._retrying(
            f"record trial {trial.number}'s launch",
            lambda: self._storage.set_trial_system_attr(trial_id, TRIAL_LAUNCHES, [*kept, record]),
        )
        self.clear_in_flight(trial_id)

    def set_stop_reason(self, trial_id: int, reason: str) -> None:
        reason = scrub(reason)  # it may quote a worker's error
        self._retrying(
            f"record why trial (id {trial_id}) stopped",
            lambda: self._storage.set_trial_system_attr(trial_id, TRIAL_STOP_REASON, reason),
        )

    def set_placement(self, trial_id: int, placement: Mapping[str, Any]) -> None:
        value = dict(placement)
        self._retrying(
            f"record trial (id {trial_id})'s placement",
            lambda: self._storage.set_trial_system_attr(trial_id, TRIAL_PLACEMENT, value),
        )

    def charge(
        self,
        trial: FrozenTrial,
        gpu_seconds: float,
        now: float,
        implicit: ImplicitPlacement | None,
    ) -> None:
        """Add ``gpu_seconds`` to ``trial``'s charge (as read), accrued until ``now``."""
        at = self.to_study(now)
        self._retrying(
            f"charge trial {trial.number}",
            lambda: charge_trial(self._storage, trial, gpu_seconds, at, implicit),
        )

    def close_account(self, trial_id: int, now: Callable[[], float]) -> None:
        """Stop a trial's accrual at its last measured charge (before Optuna settles it)."""

        def close() -> None:
            trial = self._storage.get_trial(trial_id)
            implicit = implicit_placement(self._storage, self._study_id)
            charge_trial(self._storage, trial, 0.0, self.to_study(now()), implicit)

        self._retrying(f"close trial (id {trial_id})'s account", close)
