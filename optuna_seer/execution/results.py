"""What a run of :class:`~optuna_seer.execution.tuner.ElasticTuner` produced.

:class:`LaunchRecord` (one launch of one trial for one rung), :class:`RungRecord` (a rung as
planned and as executed), :class:`TuningResult` (the whole run) and
:class:`StudyMismatchError` (a study this run must not continue). Plain dataclasses: the
records are also what the run journal stores and reads back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import statistics
from typing import TYPE_CHECKING, Any

from optuna_seer.backends.base import LaunchState
from optuna_seer.planning.plan import Plan, Rung

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from optuna_seer.integration.ledger import Ledger


class StudyMismatchError(ValueError):
    """This run cannot continue the study in the storage: it was started with another plan
    (deadline, budget, slots...), or it was stopped by an error that failed its trials.

    Continuing it would mix two runs in one study; run it with its original settings, or
    start a new study under another name.
    """


@dataclass(frozen=True)
class LaunchRecord:
    """One launch of one trial for one rung, as it happened.

    ``started_at``/``finished_at`` are seconds from the job's start; ``lanes`` are the slot
    indices it held (for timelines); ``train_seconds``/``epochs`` come from the worker;
    ``queue_s``/``boot_s``/``setup_s`` from a cloud backend's status (the seconds before its
    job was submitted: waiting for placement, provisioning, sync + setup; ``None``
    elsewhere), stored with the rest in the trial's ``seer:launches`` attribute.

    Example:
        >>> r = LaunchRecord(0, 0, 2, (0, 1), 10.0, 40.0, "succeeded", 20.0, 4)
        >>> r.wall_seconds, r.overhead_seconds, r.epoch_seconds
        (30.0, 10.0, 5.0)
    """

    trial_number: int
    rung: int
    workers: int
    lanes: tuple[int, ...]
    started_at: float
    finished_at: float
    state: str
    train_seconds: float | None = None
    epochs: int | None = None
    message: str = ""
    checkpoint: str | None = None
    queue_s: float | None = None
    boot_s: float | None = None
    setup_s: float | None = None

    @property
    def wall_seconds(self) -> float:
        return self.finished_at - self.started_at

    @property
    def overhead_seconds(self) -> float | None:
        """Launch + resume + checkpoint: wall time not spent training epochs."""
        if self.train_seconds is None:
            return None
        return max(self.wall_seconds - self.train_seconds, 0.0)

    @property
    def epoch_seconds(self) -> float | None:
        if self.train_seconds is None or not self.epochs:
            return None
        return self.train_seconds / self.epochs

    @property
    def failed(self) -> bool:
        """The launch crashed, was killed or preempted (it may have been retried)."""
        return self.state == LaunchState.FAILED.value


@dataclass(frozen=True)
class RungRecord:
    """A rung as planned (when it started) and as executed; times from the job's start."""

    planned: Rung
    started_at: float
    finished_at: float
    trials: tuple[int, ...]
    promoted: tuple[int, ...]
    eliminated: tuple[int, ...]
    gpu_seconds: float
    launches: tuple[LaunchRecord, ...]

    @property
    def overhead_seconds(self) -> float | None:
        """Mean launch + resume + checkpoint seconds per launch in this rung."""
        values = [v for v in (r.overhead_seconds for r in self.launches) if v is not None]
        return statistics.fmean(values) if values else None

    @property
    def epoch_seconds(self) -> float | None:
        """Mean measured seconds per epoch at this rung's workers."""
        values = [v for v in (r.epoch_seconds for r in self.launches) if v is not None]
        return statistics.fmean(values) if values else None


@dataclass(frozen=True)
class TuningResult:
    """What :meth:`ElasticTuner.run` did: the best trial, the rungs, the ledger, the timeline."""

    study_name: str
    plan: Plan
    final_plan: Plan
    best_trial: FrozenTrial | None
    rungs: tuple[RungRecord, ...]
    launches: tuple[LaunchRecord, ...]
    ledger: Ledger
    slots: int
    wall_seconds: float
    notes: tuple[str, ...] = field(default=())
    trial_states: dict[int, str] = field(default_factory=dict)
    retried_launches: int = 0
    checkpoint_fallbacks: int = 0
    reloaded: bool = False
    """The study had already finished: nothing was run, this was read back from storage."""

    @property
    def failed_launches(self) -> int:
        """Launches that failed (crashed, killed, preempted), retried or not."""
        return sum(1 for launch in self.launches if launch.failed)

    @property
    def best_params(self) -> dict[str, Any] | None:
        return None if self.best_trial is None else dict(self.best_trial.params)

    @property
    def best_value(self) -> float | None:
        return None if self.best_trial is None else self.best_trial.value

    @property
    def deadline_met(self) -> bool:
        return self.wall_seconds <= self.plan.deadline_s

    @property
    def spent_dollars(self) -> float:
        return self.ledger.spent_dollars
