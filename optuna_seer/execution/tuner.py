"""ElasticTuner: execute a SEER plan rung by rung, resizing trials through checkpoints.

Optuna cannot pause a trial, so the executor keeps each trial ``RUNNING`` across its
launches and tells Optuna ``PRUNED`` or ``COMPLETE`` itself. For every rung it

1. launches each surviving trial on the backend with the rung's workers (GPUs), from the
   trial's last rung-end checkpoint, in waves when the slots do not fit them all at once;
2. waits until every launch has reported the rung's cumulative epochs (the training script
   reports through the storage and checkpoints at the end: ``SeerCallback`` or
   ``TrialContext.report``/``save_checkpoint``);
3. charges each trial's measured worker-seconds to the study's ledger;
4. asks ``SeerPruner.decide_rung`` who survives and tells Optuna ``PRUNED`` for the rest;
5. compares measured epoch and launch times with the plan and, when the remaining rungs
   would miss the deadline or the budget (or the measurements drift by more than
   ``drift_tolerance``), re-plans the rest with :func:`~optuna_seer.planning.seer.assign_gpus`,
   shrinking the survivors if even that cannot meet them, and says what changed.

The finalists are told ``COMPLETE`` with their last reported value. Near the deadline
running trials are asked to stop after their current epoch (they still checkpoint); at the
deadline they are stopped.

A launch that fails (a rank killed, the process group killed, the node preempted) is
launched again from the trial's last good checkpoint on fresh workers, at most
``max_launch_retries`` times per trial and rung; its cost stays charged, the retries are
counted in :class:`TuningResult` and the re-planning after the rung accounts for the time lost.

The executor keeps its progress in the study's storage (the rung it runs, the re-planned
rungs, the rungs done, every finished launch and every launch in flight, whether the run
finished), so running the same driver again continues a study whose driver was killed or
paused with Ctrl-C (``resume="auto"``, the default): finished rungs are not run again, each
trial resumes from its last good checkpoint, the cost already charged is not charged again,
and the deadline clock keeps running from the study's first start. A study that already
finished is not run again: ``run()`` returns its stored result. A study started with another
plan (deadline, budget, slots) is refused with :class:`StudyMismatchError`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
import contextlib
from dataclasses import asdict, dataclass, field, replace
import importlib.util
import inspect
import math
from pathlib import Path
import statistics
import sys
import time
from typing import Any, TypeVar

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_seer.backends.base import Backend, LaunchSpec, LaunchState
from optuna_seer.integration.keys import (
    STUDY_DRIVER_ALIVE,
    STUDY_DRIVER_PAUSED,
    STUDY_EXECUTOR_PROGRESS,
    STUDY_PLAN,
    TRIAL_BEYOND_PLAN,
    TRIAL_IN_FLIGHT,
    TRIAL_LAUNCHES,
    TRIAL_LEDGER,
    TRIAL_PLACEMENT,
    TRIAL_STOP_REASON,
    checkpoint_fallback_key,
    launch_timing_key,
)
from optuna_seer.integration.ledger import Ledger, charge_trial, read_ledger, start_clock
from optuna_seer.integration.optuna_internals import storage_of, study_id_of, trial_id_of
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.ranking import best_finalist
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.integration.trial_gpus import ImplicitPlacement, implicit_placement, placement_of
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.plan import Plan, Rung, format_seconds
from optuna_seer.planning.scaling import ScalingCurve
from optuna_seer.planning.seer import assign_gpus, gpu_candidates
from optuna_seer.planning.workload import Workload
from optuna_seer.storage.retry import RetryPolicy, call_with_retries, is_transient_storage_error
from optuna_seer.storage.urls import storage_url_of
from optuna_seer.worker.checkpoints import open_store
from optuna_seer.worker.context import ENV_MAX_EPOCHS, checkpoint_name, checkpoint_object_uri

SearchSpace = Callable[[optuna.Trial], Any]
T = TypeVar("T")
_STORAGE_RETRIES = RetryPolicy(attempts=6, base_s=0.5, max_s=8.0)
# How often the driver records that it is alive while launches run; a killed driver's
# launches on a backend whose launches end with it are charged up to two periods past it.
HEARTBEAT_SECONDS = 5.0


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
    indices it held (for timelines); ``train_seconds``/``epochs`` come from the worker.
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
        return sum(1 for launch in self.launches if launch.state == LaunchState.FAILED.value)

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


def entrypoint_of(train: str | Path | Callable[[], Any]) -> str:
    """The ``optuna_seer.worker.entrypoint`` target for a script path or a module-level function."""
    if isinstance(train, Path):
        train = str(train)
    if isinstance(train, str):
        path = train.rpartition(":")[0] if ":" in train else train
        if path.endswith(".py") and not Path(path).is_file():
            raise ValueError(f"train={train!r}: no such file.")
        if path.endswith(".py"):
            return str(Path(path).resolve()) + train[len(path) :]
        return train
    if callable(train):
        qualname = getattr(train, "__qualname__", "")
        if not qualname or "<" in qualname or "." in qualname:
            raise ValueError(
                f"train={train!r} must be a module-level function (workers import it by name)."
            )
        try:
            source = inspect.getfile(train)
        except TypeError:
            raise ValueError(f"train={train!r} is not defined in a Python file.") from None
        return f"{Path(source).resolve()}:{qualname}"
    raise TypeError(
        f"train={train!r} must be a script path, 'file.py:function', 'module:function' or a "
        "module-level function."
    )


def resumable_study_name(
    storage: str | optuna.storages.BaseStorage, base: str, *, fresh: bool = False
) -> str:
    """The study a re-runnable command works on, so that running it again resumes it.

    The newest of ``base``, ``base-2``, ``base-3``, ... in ``storage`` (``base`` when none
    exists); with ``fresh``, the next free name of that series. Pass it to
    ``optuna.create_study(..., load_if_exists=True)``: :meth:`ElasticTuner.run` then
    continues that study if its driver was stopped, or returns its stored result if it
    finished.

    Example:
        >>> storage = optuna.storages.InMemoryStorage()
        >>> resumable_study_name(storage, "digits")
        'digits'
        >>> _ = optuna.create_study(storage=storage, study_name="digits")
        >>> resumable_study_name(storage, "digits")
        'digits'
        >>> resumable_study_name(storage, "digits", fresh=True)
        'digits-2'
    """
    if not isinstance(base, str) or not base:
        raise ValueError(f"study name {base!r} must be a non-empty string.")
    names = set(optuna.get_all_study_names(storage))
    count = 1
    while (base if count == 1 else f"{base}-{count}") in names:
        count += 1
    if fresh or count == 1:
        return base if count == 1 else f"{base}-{count}"
    return base if count == 2 else f"{base}-{count - 1}"


def _search_space_of(train: str | Path | Callable[[], Any]) -> SearchSpace:
    module: Any
    if callable(train) and not isinstance(train, (str, Path)):
        module = sys.modules.get(train.__module__)
    else:
        target = str(train)
        location = target.rpartition(":")[0] if ":" in target else target
        if location.endswith(".py"):
            spec = importlib.util.spec_from_file_location("__seer_search_space__", location)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(location)
    found = getattr(module, "search_space", None)
    if not callable(found):
        raise ValueError(
            f"no search space: pass search_space=callable(trial) or define a function "
            f"search_space(trial) next to the training code ({train!r})."
        )
    return found  # type: ignore[no-any-return]


def _up_to_peak(points: dict[int, float]) -> ScalingCurve:
    """A table curve through ``points`` (``{1: 1.0, ...}``), cut where it stops increasing."""
    table = {1: 1.0}
    for gpus in sorted(k for k in points if k > 1):
        speedup = min(points[gpus], float(gpus))
        if speedup <= table[max(table)]:
            break
        table[gpus] = speedup
    return ScalingCurve.parse(table)


def _curve_from_plan(plan: Plan) -> ScalingCurve:
    """The speedups implied by the plan's per-rung epoch times (linear below its smallest k)."""
    by_gpus = {r.gpus_per_trial: r.epoch_seconds for r in plan.rungs}
    smallest = min(by_gpus)
    return _up_to_peak(
        {gpus: smallest * by_gpus[smallest] / seconds for gpus, seconds in by_gpus.items()}
    )


def measured_curve(
    prior: ScalingCurve, epoch_seconds: dict[int, float], max_gpus: int
) -> tuple[float, ScalingCurve]:
    """One-GPU epoch time and speedup curve from measured seconds per epoch at some ``k``.

    Measured speedups replace the prior's where a worker count was measured (relative to one
    worker when it was measured, else through the prior at the smallest measured count);
    the prior fills the other powers of two up to ``max_gpus``. The curve stops at its peak,
    so a count that measured slower is never bought again.

    Example:
        >>> t1, curve = measured_curve(ScalingCurve.parse("linear"), {1: 2.0, 2: 4.0}, 4)
        >>> t1, curve.max_useful_gpus
        (2.0, 1.0)
    """
    smallest = min(epoch_seconds)
    t1 = epoch_seconds[smallest] * prior.speedup(smallest)
    points = {k: t1 / seconds for k, seconds in epoch_seconds.items()}
    gpus = 2
    while gpus <= max_gpus:
        points.setdefault(gpus, prior.speedup(gpus))
        gpus *= 2
    points[1] = 1.0
    return t1, _up_to_peak(points)


class _RungProgress:
    """A one-line progress bar per rung on stderr: ``rung 1: ... [####----] 2/4 trials 31 s``."""

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        self._label, self._total, self._enabled = label, total, enabled
        self._done = 0
        self._start = time.monotonic()
        self._draw()

    def _draw(self, end: str = "") -> None:
        if not self._enabled:
            return
        filled = 20 * self._done // max(self._total, 1)
        bar = "#" * filled + "-" * (20 - filled)
        elapsed = time.monotonic() - self._start
        print(
            f"\r{self._label} [{bar}] {self._done}/{self._total} trials {elapsed:.0f} s",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    def update(self, count: int) -> None:
        self._done += count
        self._draw()

    def close(self) -> None:
        self._draw(end="\n")


class ElasticTuner:
    """Run a SEER plan on a backend: launch, wait, prune, checkpoint, resize, repeat.

    Args:
        study: A study with ``sampler=SeerSampler(...)`` and ``pruner=SeerPruner(...)`` and no
            trials yet, on a storage the workers can open (SQLite, journal file, RDB, gRPC).
        plan: The plan to run; defaults to (and must equal) ``study.pruner.plan``.
        backend: Where trials run, e.g. ``LocalBackend(slots=2)``; its slots are the cluster.
        train: The training program: a script path, ``"file.py:function"``,
            ``"module:function"`` or a module-level function.
        checkpoints: Root for checkpoints: a directory or ``s3://bucket/prefix``; each trial
            gets ``<root>/<study>/trial-<n>``.
        search_space: ``callable(trial)`` that suggests the parameters; defaults to a
            ``search_space`` function next to ``train``.
        workload: The workload the plan was made for (its scaling curve is used to re-plan);
            if ``None``, the curve implied by the plan's epoch times is used.
        storage_url: The storage URL for workers, if it cannot be read from the study.
        limits: Cluster limits for re-planning; ``ClusterLimits(max_gpus=backend.slots)``.
        drift_tolerance: Re-plan when measured epoch or launch times differ from the plan's by
            more than this fraction; re-planning picks the cheapest workers that meet the
            deadline again. It always re-plans when the deadline or budget is at risk
            (``math.inf``: only then).
        poll_seconds: How often the backend is polled.
        progress: Show a progress bar per rung and print what the executor decides.
        max_launch_retries: How many times a failed launch of a trial is started again in the
            same rung (from the trial's last good checkpoint, on fresh workers) before the
            trial is told ``FAIL``. Retries are not started once the deadline or budget guard
            has asked running trials to stop.
        resume: What to do with a study an ``ElasticTuner`` already started. ``"auto"``
            (default): continue it if it did not finish (its driver was killed, or paused
            with Ctrl-C, which stops the launches and leaves the trials in play), rebuilding
            the rung, the live trials, their checkpoints and the ledger from the storage;
            return its stored result, running nothing, if it finished; start it if it is
            new. ``True``: the study must have been started (else ``ValueError``).
            ``False``: the study must be new (else ``ValueError``). Launches a killed
            driver left running run again from their last good checkpoint; they are
            charged from their start to the resume (an upper bound: nobody saw them end)
            or, on a backend whose launches end with the driver (``LocalBackend``), to two
            heartbeats past its last one; launches a Ctrl-C stopped, to that moment. A
            stored plan or slot count that differs from
            this one raises :class:`StudyMismatchError`.

    Example:
        >>> tuner = ElasticTuner(study, plan=pruner.plan,  # doctest: +SKIP
        ...                      backend=LocalBackend(slots=2),
        ...                      train="examples/lightning_digits.py:train",
        ...                      checkpoints="./ckpt")
        >>> result = tuner.run()  # doctest: +SKIP
        >>> result.best_params  # doctest: +SKIP
    """

    def __init__(
        self,
        study: optuna.Study,
        plan: Plan | None = None,
        *,
        backend: Backend,
        train: str | Path | Callable[[], Any],
        checkpoints: str | Path,
        search_space: SearchSpace | None = None,
        workload: Workload | None = None,
        storage_url: str | None = None,
        limits: ClusterLimits | None = None,
        drift_tolerance: float = 0.25,
        poll_seconds: float = 0.5,
        progress: bool = True,
        max_launch_retries: int = 2,
        resume: bool | str = "auto",
    ) -> None:
        if not isinstance(study, optuna.Study):
            raise TypeError(f"study={study!r} must be an optuna.Study.")
        pruner = study.pruner
        if not isinstance(pruner, SeerPruner) or not isinstance(study.sampler, SeerSampler):
            raise ValueError(
                "ElasticTuner needs optuna.create_study(sampler=SeerSampler(...), "
                f"pruner=SeerPruner(...)); got sampler={study.sampler!r}, pruner={pruner!r}."
            )
        if plan is not None and plan != pruner.plan:
            raise ValueError(
                "plan= differs from study.pruner.plan: the pruner decides rungs by its plan, so "
                "pass plan=pruner.plan (or leave it out)."
            )
        if not isinstance(backend, Backend):
            raise TypeError(f"backend={backend!r} must be an optuna_seer Backend.")
        self._pruner = pruner
        self._plan = pruner.plan
        widest = max(r.gpus_per_trial for r in self._plan.rungs)
        if widest > backend.slots:
            raise ValueError(
                f"the plan gives a trial {widest} workers but the backend has {backend.slots} "
                "slots; plan with ClusterLimits(max_gpus=slots)."
            )
        self._study = study
        self._backend = backend
        self._entrypoint = entrypoint_of(train)
        self._search_space = search_space if search_space is not None else _search_space_of(train)
        if not callable(self._search_space):
            raise TypeError(f"search_space={search_space!r} must be callable(trial).")
        if not isinstance(checkpoints, (str, Path)) or not str(checkpoints):
            raise ValueError(f"checkpoints={checkpoints!r} must be a directory or s3:// prefix.")
        root = str(checkpoints).rstrip("/")
        open_store(root)  # validates the URI early
        self._checkpoint_root = root if root.startswith("s3://") else str(Path(root).resolve())
        self._storage_url = storage_url or storage_url_of(storage_of(study))
        if workload is not None and not isinstance(workload, Workload):
            raise TypeError(f"workload={workload!r} must be an optuna_seer.Workload.")
        self._workload = workload
        self._limits = limits or ClusterLimits(max_gpus=backend.slots)
        if not drift_tolerance > 0:
            raise ValueError(
                f"drift_tolerance={drift_tolerance!r} must be a positive fraction (math.inf: "
                "re-plan only when the deadline or budget is at risk)."
            )
        self._drift = drift_tolerance
        if not (poll_seconds > 0 and math.isfinite(poll_seconds)):
            raise ValueError(f"poll_seconds={poll_seconds!r} must be positive.")
        self._poll = poll_seconds
        self._progress = progress
        if (
            isinstance(max_launch_retries, bool)
            or not isinstance(max_launch_retries, int)
            or max_launch_retries < 0
        ):
            raise ValueError(
                f"max_launch_retries={max_launch_retries!r} must be a whole number >= 0 (0: a "
                "failed launch fails its trial)."
            )
        self._max_retries = max_launch_retries
        if not (isinstance(resume, bool) or resume == "auto"):
            raise ValueError(
                f"resume={resume!r} must be 'auto' (continue a started study, start a new "
                "one), True (must continue) or False (must be new)."
            )
        self._resume_study: bool | str = resume
        self._records_done: list[RungRecord] = []
        self._done_in_rung: set[int] = set()
        self._retries: dict[tuple[int, int], int] = {}
        self._fallbacks = 0
        self._notes: list[str] = []
        self._launches: list[LaunchRecord] = []
        self._t0 = 0.0
        self._charged_gpu_s = 0.0
        self._beat_at = -math.inf

    # ----------------------------------------------------------------- helpers
    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """A storage write, retried with backoff and jitter while the storage is locked or
        unreachable; then :class:`~optuna_seer.storage.retry.StorageUnavailableError`."""
        return call_with_retries(
            call, what=what, transient=is_transient_storage_error, policy=_STORAGE_RETRIES
        )

    def _say(self, message: str) -> None:
        self._notes.append(message)
        if self._progress:
            print(f"[seer] {message}", file=sys.stderr, flush=True)

    def _trial(self, number: int) -> FrozenTrial:
        return storage_of(self._study).get_trial(self._ids[number])

    def _implicit(self) -> ImplicitPlacement | None:
        """The study's implicit-placement rule (trials placed without a write of their own)."""
        return implicit_placement(storage_of(self._study), study_id_of(self._study))

    def _trial_uri(self, number: int) -> str:
        return f"{self._checkpoint_root}/{self._study.study_name}/trial-{number}"

    def _close_account(self, number: int) -> None:
        # Stop the ledger's accrual at its last measured charge before Optuna settles it.
        charge_trial(
            storage_of(self._study), self._trial(number), 0.0, self._backend.now(), self._implicit()
        )

    def _tell(self, number: int, state: TrialState, reason: str | None = None) -> None:
        storage = storage_of(self._study)
        if reason is not None:
            self._retrying(
                f"record why trial {number} stopped",
                lambda: storage.set_trial_system_attr(self._ids[number], TRIAL_STOP_REASON, reason),
            )
        self._retrying(f"close trial {number}'s account", lambda: self._close_account(number))
        if state == TrialState.COMPLETE:
            trial = self._trial(number)
            value = trial.intermediate_values[trial.last_step]  # type: ignore[index]
            self._study.tell(number, value)
        else:
            self._study.tell(number, state=state)
        self._states[number] = state.name

    # ----------------------------------------------------------------- run
    def run(self) -> TuningResult:
        """Execute the plan; returns what happened. Releases the backend on every exit.

        A study this executor started before is continued where it stands (its driver was
        killed or paused with Ctrl-C) or, if it finished, its stored result is returned
        (``result.reloaded``); see ``resume``.

        Raises:
            ValueError: The study has trials no ``ElasticTuner`` started; ``resume=False``
                and the study was started; or ``resume=True`` and it was not.
            StudyMismatchError: The study was started with another plan or slot count, or
                it was stopped by an error (its trials were told ``FAIL``).
            KeyboardInterrupt: Ctrl-C: the backend is released (launches stopped), the
                trials stay in play, and running the driver again continues the study.
        """
        study = self._study
        storage = storage_of(study)
        name = study.study_name
        attrs = storage.get_study_system_attrs(study_id_of(study))
        progress: dict[str, Any] | None = attrs.get(STUDY_EXECUTOR_PROGRESS)
        if progress is None and study.get_trials(deepcopy=False):
            raise ValueError(
                f"study {name!r} already has trials that no ElasticTuner started (there is no "
                "executor progress in its storage); use a new study_name for a SEER run."
            )
        if progress is not None and self._resume_study is False:
            raise ValueError(
                f"study {name!r} already has trials and resume=False wants a new study; "
                "continue it with resume='auto' (the default) or use a new study_name."
            )
        if progress is None and self._resume_study is True:
            raise ValueError(
                f"resume=True but study {name!r} was never started by an ElasticTuner: there "
                "is nothing to continue (resume='auto' starts it)."
            )
        if progress is not None:
            self._check_same_run(attrs, progress)
            if progress.get("stopped"):
                raise StudyMismatchError(
                    f"study {name!r} was stopped by {progress['stopped']} in rung "
                    f"{progress['rung']} and its trials in play were told FAIL, so it cannot "
                    "be continued; start a new study (another study_name)."
                )
        self._t0 = start_clock(study, self._backend.now())
        self._ids: dict[int, int] = {}
        self._params: dict[int, dict[str, Any]] = {}
        self._states: dict[int, str] = {}
        self._resume: dict[int, str | None] = {}
        if progress is not None and progress.get("finished_at") is not None:
            return self._stored_result(progress)
        schedule_: list[Rung] = list(self._plan.rungs)
        records: list[RungRecord] = []
        index = 0
        try:
            if progress is not None:
                index, schedule_, alive = self._restore(progress)
                records = list(self._records_done)
            else:
                # Saved before sampling, so a driver killed while sampling is resumed too.
                self._save_progress(0, schedule_, records, sampled=False)
                self._sample(self._plan.n_configs)
                alive = list(self._ids)
                self._say(
                    f"{len(alive)} configurations sampled; plan: {len(schedule_)} rungs, "
                    f"{format_seconds(self._plan.predicted_seconds)} and "
                    f"${self._plan.predicted_cost:,.2f} predicted"
                )
            # (Nothing alive: killed after the last trial was told, before it saved that.)
            while index < len(schedule_) and alive:
                rung = schedule_[index]
                self._save_progress(index, schedule_, records)
                record, alive, cut_short = self._run_rung(rung, alive, schedule_)
                records.append(record)
                if cut_short:
                    self._finish_early(alive, rung, cut_short)
                    break
                if index == len(schedule_) - 1:
                    for number in alive:
                        self._tell(number, TrialState.COMPLETE)
                    break
                alive = self._decide(index, alive, records)
                schedule_ = self._replan(index, schedule_, alive, records)
                keep = schedule_[index + 1].n_trials
                for number in alive[keep:]:
                    self._tell(
                        number,
                        TrialState.PRUNED,
                        f"re-plan after rung {index}: only the best {keep} can finish in time",
                    )
                alive = alive[:keep]
                index += 1
        except BaseException as exc:
            self._backend.release()
            if isinstance(exc, KeyboardInterrupt):
                # Ctrl-C pauses: the trials stay in play and the same command continues the
                # study, charging the launches just stopped up to this moment.
                with contextlib.suppress(Exception):  # a second Ctrl-C, or the storage
                    storage_of(self._study).set_study_system_attr(
                        study_id_of(self._study), STUDY_DRIVER_PAUSED, self._backend.now()
                    )
                raise
            for number, state in self._states.items():
                if state == TrialState.RUNNING.name:
                    self._tell(number, TrialState.FAIL, "executor stopped by an error")
            with contextlib.suppress(Exception):  # the storage may be what failed
                self._save_progress(index, schedule_, records, stopped=type(exc).__name__)
            raise
        self._backend.release()
        finished = self._backend.now()
        self._save_progress(index, schedule_, records, finished_at=finished)
        return self._result(records, schedule_, finished)

    def _sample(self, count: int) -> None:
        """Ask Optuna for ``count`` more configurations (stops at the plan's width)."""
        for _ in range(count):
            trial = self._study.ask()
            if (
                storage_of(self._study)
                .get_trial_system_attrs(trial_id_of(trial))
                .get(TRIAL_BEYOND_PLAN)
            ):
                self._study.tell(trial, state=TrialState.PRUNED)
                break
            self._search_space(trial)
            self._ids[trial.number] = trial_id_of(trial)
            self._params[trial.number] = dict(trial.params)
            self._resume[trial.number] = None
            self._states[trial.number] = TrialState.RUNNING.name

    def _heartbeat(self, now: float) -> None:
        """Record that the driver is alive at ``now`` (see ``launches_end_with_driver``)."""
        self._beat_at = now
        self._retrying(
            "record the driver's heartbeat",
            lambda: storage_of(self._study).set_study_system_attr(
                study_id_of(self._study), STUDY_DRIVER_ALIVE, now
            ),
        )

    def _save_progress(
        self,
        index: int,
        schedule_: Sequence[Rung],
        records: Sequence[RungRecord],
        *,
        sampled: bool = True,
        finished_at: float | None = None,
        stopped: str | None = None,
    ) -> None:
        def rung_done(record: RungRecord) -> dict[str, Any]:
            kept = {k: v for k, v in asdict(record).items() if k != "launches"}
            return kept  # launches are kept per trial (seer:launches), not twice

        value: dict[str, Any] = {
            "rung": index,
            "rungs": [asdict(r) for r in schedule_],
            "slots": self._backend.slots,
            "sampled": sampled,
            "done": [rung_done(r) for r in records],
            "notes": [note[:500] for note in self._notes[-50:]],  # an RDB Text column: <64 KB
            "retried": sum(self._retries.values()),
            "fallbacks": self._fallbacks,
            "finished_at": finished_at,
            "stopped": stopped,
        }
        self._retrying(
            "save the executor's progress",
            lambda: storage_of(self._study).set_study_system_attr(
                study_id_of(self._study), STUDY_EXECUTOR_PROGRESS, value
            ),
        )

    def _record_from(self, stored: dict[str, Any]) -> RungRecord:
        """A rung record saved by :meth:`_save_progress`, its launches from the trials."""
        planned = Rung(**stored["planned"])
        return RungRecord(
            planned=planned,
            started_at=float(stored["started_at"]),
            finished_at=float(stored["finished_at"]),
            trials=tuple(stored["trials"]),
            promoted=tuple(stored["promoted"]),
            eliminated=tuple(stored["eliminated"]),
            gpu_seconds=float(stored["gpu_seconds"]),
            launches=tuple(r for r in self._launches if r.rung == planned.index),
        )

    def _check_same_run(self, attrs: dict[str, Any], progress: dict[str, Any]) -> None:
        """Refuse to continue a study that was started with another plan or slot count."""
        stored = attrs.get(STUDY_PLAN)
        then = Plan.from_dict(stored) if stored is not None else None
        now = self._plan
        differences: list[str] = []
        if then is not None and then != now:
            pairs = [
                ("deadline", f"{then.deadline_s:g} s", f"{now.deadline_s:g} s"),
                ("budget", f"${then.budget_dollars:g}", f"${now.budget_dollars:g}"),
                (
                    "price",
                    f"${then.price_per_gpu_second * 3600:g}/GPU-hour",
                    f"${now.price_per_gpu_second * 3600:g}/GPU-hour",
                ),
                ("configurations", str(then.n_configs), str(now.n_configs)),
                (
                    "rung epochs",
                    str([r.resource for r in then.rungs]),
                    str([r.resource for r in now.rungs]),
                ),
                (
                    "workers per trial",
                    str([r.gpus_per_trial for r in then.rungs]),
                    str([r.gpus_per_trial for r in now.rungs]),
                ),
                ("reduction factor", str(then.reduction_factor), str(now.reduction_factor)),
            ]
            differences = [f"{what} {a} (stored) vs {b} (now)" for what, a, b in pairs if a != b]
            if not differences:
                differences = ["the rungs' predicted times and costs (another workload)"]
        slots = progress.get("slots")
        if slots is not None and int(slots) != self._backend.slots:
            differences.append(f"slots {slots} (stored) vs {self._backend.slots} (now)")
        if differences:
            raise StudyMismatchError(
                f"study {self._study.study_name!r} was started with another plan: "
                f"{'; '.join(differences)}. Run it again with its original settings to "
                "continue it, or start a new study under another name."
            )

    def _stored_result(self, progress: dict[str, Any]) -> TuningResult:
        """The result of a study that already finished, read back from the storage."""
        implicit = self._implicit()
        for trial in self._study.get_trials(deepcopy=False):
            if placement_of(trial, implicit) is None:
                continue
            self._states[trial.number] = trial.state.name
            self._launches.extend(
                LaunchRecord(**{**r, "lanes": tuple(r["lanes"])})
                for r in trial.system_attrs.get(TRIAL_LAUNCHES, [])
            )
        self._launches.sort(key=lambda r: r.started_at)
        self._notes = list(progress.get("notes", []))
        finished = float(progress["finished_at"])
        self._say(
            f"study {self._study.study_name!r} already finished "
            f"({format_seconds(finished - self._t0)} after it started): nothing was run, this "
            "is its stored result; start a new run under another study name"
        )
        result = self._result(
            [self._record_from(d) for d in progress.get("done", [])],
            [Rung(**r) for r in progress["rungs"]],
            finished,
        )
        return replace(
            result,
            retried_launches=int(progress.get("retried", 0)),
            checkpoint_fallbacks=int(progress.get("fallbacks", 0)),
            reloaded=True,
        )

    def _restore(self, progress: dict[str, Any]) -> tuple[int, list[Rung], list[int]]:
        """Rebuild the run's state from the storage (see ``resume``); (rung, rungs, alive)."""
        storage, now = storage_of(self._study), self._backend.now()
        index = int(progress["rung"])
        schedule_ = [Rung(**r) for r in progress["rungs"]]
        self._notes = list(progress.get("notes", []))
        self._fallbacks = int(progress.get("fallbacks", 0))
        alive: list[int] = []
        lost_gpu_s = 0.0
        # Launches the killed driver left running are charged up to now (an upper bound),
        # or, where they end with the driver, up to two heartbeats past its last one; those
        # a Ctrl-C stopped (a pause newer than the last heartbeat), up to the pause.
        lost_until, until = now, "the resume"
        study_attrs = storage.get_study_system_attrs(study_id_of(self._study))
        beat, paused = study_attrs.get(STUDY_DRIVER_ALIVE), study_attrs.get(STUDY_DRIVER_PAUSED)
        if paused is not None and (beat is None or float(paused) >= float(beat)):
            lost_until, until = min(now, float(paused)), "the Ctrl-C that paused the driver"
        elif self._backend.launches_end_with_driver and beat is not None:
            lost_until = min(now, float(beat) + 2 * HEARTBEAT_SECONDS)
            until = "the driver's last heartbeat"
        implicit = self._implicit()
        for trial in self._study.get_trials(deepcopy=False):
            attrs = trial.system_attrs
            if placement_of(trial, implicit) is None:
                continue
            number = trial.number
            self._ids[number] = trial_id_of(trial)
            self._params[number] = dict(trial.params)
            self._states[number] = trial.state.name
            launches = [
                LaunchRecord(**{**r, "lanes": tuple(r["lanes"])})
                for r in attrs.get(TRIAL_LAUNCHES, [])
            ]
            self._launches.extend(launches)
            good = [r.checkpoint for r in launches if r.checkpoint is not None]
            self._resume[number] = good[-1] if good else None
            for r in launches:
                if r.rung == index and r.state != LaunchState.FAILED.value:
                    self._done_in_rung.add(number)
                if r.state == LaunchState.FAILED.value:
                    key = (number, r.rung)
                    self._retries[key] = self._retries.get(key, 0) + 1
            in_flight = attrs.get(TRIAL_IN_FLIGHT)
            if trial.state == TrialState.RUNNING:
                alive.append(number)
                if not progress.get("sampled", True):
                    # Killed while sampling: finish this trial's search space (parameters
                    # already suggested keep their values).
                    live = optuna.Trial(self._study, trial_id_of(trial))
                    self._search_space(live)
                    self._params[number] = dict(live.params)
                # Idle trials stop accruing over the downtime.
                seconds = 0.0
                if in_flight is not None and int(in_flight["launch"]) >= len(launches):
                    charged_until = float(attrs.get(TRIAL_LEDGER, [0.0, 0.0])[1])
                    began = max(float(in_flight["started_at"]), charged_until)
                    seconds = max(lost_until - began, 0.0) * int(in_flight["workers"])
                    lost_gpu_s += seconds
                if in_flight is not None:
                    storage.set_trial_system_attr(trial_id_of(trial), TRIAL_IN_FLIGHT, None)
                charge_trial(storage, trial, seconds, now, implicit)
        if not progress.get("sampled", True):
            self._sample(self._plan.n_configs - len(self._ids))
            alive = [n for n in self._ids if self._states[n] == TrialState.RUNNING.name]
        self._launches.sort(key=lambda r: r.started_at)
        self._records_done = [self._record_from(d) for d in progress.get("done", [])]
        self._charged_gpu_s = sum(
            float(t.system_attrs.get(TRIAL_LEDGER, [0.0])[0])
            for t in self._study.get_trials(deepcopy=False)
        )
        alive.sort()
        self._say(
            f"resumed study {self._study.study_name!r} at rung {index} "
            f"({format_seconds(now - self._t0)} after it started): {len(alive)} trial(s) in "
            f"play, {len(self._done_in_rung)} of them already through this rung, "
            f"{len(self._launches)} earlier launch(es); {lost_gpu_s:,.1f} slot-seconds charged "
            f"for launches the stopped driver left running (up to {until})"
        )
        return index, schedule_, alive

    def _result(self, records: list[RungRecord], schedule_: list[Rung], now: float) -> TuningResult:
        trials = self._study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        # SEER's selection rule, not Optuna's best_trial: the finalist with the highest mean
        # over the last rung (then the last value), a steadier estimate than one last epoch.
        since = schedule_[-2].resource if len(schedule_) > 1 else 0
        best = best_finalist(complete, since, self._plan.max_epochs, self._study.direction)
        final = replace(self._plan, rungs=tuple(schedule_))
        return TuningResult(
            study_name=self._study.study_name,
            plan=self._plan,
            final_plan=final,
            best_trial=best,
            rungs=tuple(records),
            launches=tuple(self._launches),
            ledger=read_ledger(self._study, self._plan, now, trials),
            slots=self._backend.slots,
            wall_seconds=now - self._t0,
            notes=tuple(self._notes),
            trial_states=dict(self._states),
            retried_launches=sum(self._retries.values()),
            checkpoint_fallbacks=self._fallbacks,
        )

    # ----------------------------------------------------------------- one rung
    def _run_rung(
        self, rung: Rung, alive: list[int], schedule_: Sequence[Rung]
    ) -> tuple[RungRecord, list[int], str]:
        """Launch every trial of ``rung`` (in waves) and wait; returns (record, still alive,
        ``"deadline"``/``"budget"`` if the rung was cut short, else ``""``)."""
        backend, storage = self._backend, storage_of(self._study)
        workers = rung.gpus_per_trial
        deadline_at = self._t0 + self._plan.deadline_s
        last_epoch = self._measured_epoch_seconds(workers) or rung.epoch_seconds
        grace = min(max(2.0 * last_epoch + 5.0, 10.0), 0.25 * self._plan.deadline_s)
        pending = deque(n for n in alive if n not in self._done_in_rung)
        running: dict[str, tuple[int, tuple[int, ...], float]] = {}
        free_lanes = list(range(backend.slots))
        survivors: list[int] = [n for n in alive if n in self._done_in_rung]
        self._done_in_rung = set()
        soft_stopped = hard_stopped = False
        started = backend.now() - self._t0
        bar = _RungProgress(
            f"rung {rung.index}: {workers} worker(s), to epoch {rung.resource}",
            len(alive),
            self._progress,
        )
        bar.update(len(survivors))
        price = self._plan.price_per_gpu_second
        predicted: dict[str, float] = {}
        refused = False
        stop_for = ""
        while pending or running:
            now = backend.now()
            if backend.launches_end_with_driver and now - self._beat_at >= HEARTBEAT_SECONDS:
                self._heartbeat(now)
            in_flight = sum((now - t) * workers for _, _, t in running.values())
            spent = (self._charged_gpu_s + in_flight) * price
            burn = len(running) * workers * price * grace
            if not stop_for and now >= deadline_at - grace:
                stop_for = "deadline"
            elif not stop_for and spent + burn >= self._plan.budget_dollars:
                stop_for = "budget"
            if stop_for and not soft_stopped:
                soft_stopped = True
                reason = (
                    f"deadline: stopped {format_seconds(deadline_at - now)} before it"
                    if stop_for == "deadline"
                    else f"budget: ${spent:,.2f} of ${self._plan.budget_dollars:,.2f} spent"
                )
                for number, _, _ in running.values():
                    storage.set_trial_system_attr(self._ids[number], TRIAL_STOP_REASON, reason)
                self._say(
                    f"{stop_for} near: {len(pending)} trial(s) of rung {rung.index} not launched; "
                    f"{len(running)} asked to stop after their current epoch (they checkpoint "
                    "first)"
                )
                survivors.extend(pending)
                pending.clear()
            over = (
                now >= deadline_at if stop_for == "deadline" else spent >= self._plan.budget_dollars
            )
            if soft_stopped and not hard_stopped and over:
                hard_stopped = True
                for handle in running:
                    backend.stop(handle)
            while pending and len(free_lanes) >= workers:
                number = pending.popleft()
                cost = self._predicted_launch_seconds(number, rung, schedule_) * workers * price
                committed = sum(
                    max(predicted[h] - (now - t) * workers * price, 0.0)
                    for h, (_, _, t) in running.items()
                )
                if spent + committed + cost > self._plan.budget_dollars:
                    # Not launched; it keeps what its checkpoint holds and the rung ends as
                    # a budget stop once the running launches are done.
                    bar.update(1)
                    survivors.append(number)
                    refused = True
                    self._say(
                        f"budget guard: trial {number} not launched in rung {rung.index}: "
                        f"${spent:,.2f} spent + ${committed:,.2f} committed to running "
                        f"launches + ${cost:,.2f} predicted > "
                        f"${self._plan.budget_dollars:,.2f}"
                    )
                    continue
                lanes = tuple(free_lanes[:workers])
                del free_lanes[:workers]
                spec = LaunchSpec(
                    study_name=self._study.study_name,
                    storage=self._storage_url,
                    trial_number=number,
                    params=self._params[number],
                    rung=rung.index,
                    target_epochs=rung.resource,
                    workers=workers,
                    checkpoint_uri=self._trial_uri(number),
                    resume_from=self._resume[number],
                    env={ENV_MAX_EPOCHS: str(self._plan.max_epochs)},
                    entrypoint=self._entrypoint,
                )
                handle = backend.start(spec)
                running[handle] = (number, lanes, backend.now())
                predicted[handle] = cost
                storage.set_trial_system_attr(
                    self._ids[number],
                    TRIAL_IN_FLIGHT,
                    {
                        "rung": rung.index,
                        "workers": workers,
                        "started_at": backend.now(),
                        "launch": sum(1 for r in self._launches if r.trial_number == number),
                    },
                )
            for handle in backend.wait(list(running), self._poll):
                number, lanes, _ = running.pop(handle)
                free_lanes = sorted(free_lanes + list(lanes))
                launch = self._finish_launch(handle, number, rung, lanes, soft_stopped)
                if launch.state != LaunchState.FAILED.value:
                    survivors.append(number)
                    bar.update(1)
                elif self._retry(number, rung, launch, soft_stopped):
                    pending.appendleft(number)
                else:
                    bar.update(1)
                    self._tell(number, TrialState.FAIL, launch.message[-500:])
                    self._say(f"trial {number} failed in rung {rung.index}: {launch.message}")
        bar.close()
        if refused and not stop_for:
            stop_for = "budget"
        # A resumed rung: its launches from before the driver was killed count too.
        ours = tuple(r for r in self._launches if r.rung == rung.index)
        record = RungRecord(
            planned=rung,
            started_at=min([started, *(r.started_at for r in ours)]),
            finished_at=backend.now() - self._t0,
            trials=tuple(alive),
            promoted=(),
            eliminated=(),
            gpu_seconds=sum(r.wall_seconds * r.workers for r in ours),
            launches=ours,
        )
        ordered = [n for n in alive if n in survivors]
        return record, ordered, stop_for

    def _predicted_launch_seconds(
        self, number: int, rung: Rung, schedule_: Sequence[Rung]
    ) -> float:
        """Start-up plus the epochs from the trial's resume point to the rung's end."""
        done = 0
        for record in self._launches:
            if record.trial_number == number and record.checkpoint == self._resume[number]:
                done = schedule_[record.rung].resource if record.rung < len(schedule_) else 0
        overheads = [r.overhead_seconds for r in self._launches if r.overhead_seconds is not None]
        startup = (
            statistics.median(overheads)
            if overheads
            else (self._workload.startup_seconds if self._workload is not None else 0.0)
        )
        epoch = self._measured_epoch_seconds(rung.gpus_per_trial) or rung.epoch_seconds
        return startup + max(rung.resource - done, 0) * epoch

    def _retry(self, number: int, rung: Rung, launch: LaunchRecord, stopping: bool) -> bool:
        """Whether to launch ``number`` again after ``launch`` failed (and say so)."""
        tries = self._retries.get((number, rung.index), 0)
        if stopping or tries >= self._max_retries:
            return False
        self._retries[(number, rung.index)] = tries + 1
        origin = self._resume[number] or "scratch"
        first_line = launch.message.strip().splitlines()[0] if launch.message.strip() else ""
        self._say(
            f"trial {number}: launch in rung {rung.index} failed after "
            f"{format_seconds(launch.wall_seconds)} ({first_line or 'no message'}); retry "
            f"{tries + 1}/{self._max_retries} from {origin} on fresh workers"
        )
        return True

    def _finish_launch(
        self, handle: str, number: int, rung: Rung, lanes: tuple[int, ...], stopping: bool
    ) -> LaunchRecord:
        status = self._backend.poll(handle)
        finished = status.finished_at if status.finished_at is not None else self._backend.now()
        trial = self._trial(number)
        timing = trial.system_attrs.get(launch_timing_key(rung.index))
        fallback = trial.system_attrs.get(checkpoint_fallback_key(rung.index))
        seen = sum(1 for r in self._launches if r.trial_number == number and r.rung == rung.index)
        if fallback is not None and seen == 0:
            self._fallbacks += 1
            self._say(
                f"trial {number}: checkpoint {fallback['wanted']} was corrupt or missing "
                f"({'; '.join(fallback['errors'])[:300]}); rung {rung.index} resumed from "
                f"{fallback['used'] or 'scratch'}"
            )
        state, message = status.state, status.message
        reached = trial.last_step is not None and trial.last_step >= rung.resource
        if state is LaunchState.SUCCEEDED and not reached and not stopping:
            state = LaunchState.FAILED
            message = (
                f"the script exited without reporting epoch {rung.resource} (last reported: "
                f"{trial.last_step}); report with SeerCallback or TrialContext.report."
            )
        uri = checkpoint_object_uri(self._trial_uri(number), checkpoint_name(rung.index))
        good = state is not LaunchState.FAILED and timing is not None
        if good:
            self._resume[number] = uri
        gpu_seconds = (finished - status.started_at) * rung.gpus_per_trial
        self._charged_gpu_s += gpu_seconds
        self._retrying(
            f"charge trial {number}",
            lambda: charge_trial(
                storage_of(self._study), trial, gpu_seconds, self._backend.now(), self._implicit()
            ),
        )
        launch = LaunchRecord(
            trial_number=number,
            rung=rung.index,
            workers=rung.gpus_per_trial,
            lanes=lanes,
            started_at=status.started_at - self._t0,
            finished_at=finished - self._t0,
            state=state.value,
            train_seconds=None if timing is None else float(timing["train_seconds"]),
            epochs=None if timing is None else int(timing["epochs"]),
            message=message,
            checkpoint=uri if good else None,
        )
        self._launches.append(launch)
        storage = storage_of(self._study)
        kept = trial.system_attrs.get(TRIAL_LAUNCHES, [])
        record = {**asdict(launch), "lanes": list(launch.lanes), "message": message[-500:]}
        self._retrying(
            f"record trial {number}'s launch",
            lambda: storage.set_trial_system_attr(
                trial_id_of(trial), TRIAL_LAUNCHES, [*kept, record]
            ),
        )
        self._retrying(
            f"record trial {number}'s launch",
            lambda: storage.set_trial_system_attr(trial_id_of(trial), TRIAL_IN_FLIGHT, None),
        )
        return launch

    def _finish_early(self, alive: list[int], rung: Rung, why: str) -> None:
        """Close the trials still in play when the deadline or budget cut a rung short."""
        for number in alive:
            trial = self._trial(number)
            if trial.last_step is not None and trial.last_step >= self._plan.max_epochs:
                self._tell(number, TrialState.COMPLETE)
            elif trial.last_step is None:
                self._tell(number, TrialState.PRUNED, f"{why}: never reported a value")
            else:
                self._tell(
                    number,
                    TrialState.COMPLETE,
                    f"{why}: stopped after {trial.last_step} of {self._plan.max_epochs} epochs",
                )
        self._say(
            f"{why} reached in rung {rung.index}: {len(alive)} trial(s) in play told COMPLETE "
            "with their last reported value"
        )

    # ----------------------------------------------------------------- between rungs
    def _decide(self, index: int, alive: list[int], records: list[RungRecord]) -> list[int]:
        decision = self._pruner.decide_rung(self._study, index)
        promoted = [n for n in decision.promoted if n in alive]
        eliminated = [n for n in alive if n not in promoted]
        for number in eliminated:
            self._tell(number, TrialState.PRUNED)
        records[-1] = replace(records[-1], promoted=tuple(promoted), eliminated=tuple(eliminated))
        return promoted

    def _curve(self) -> ScalingCurve:
        return self._workload.curve if self._workload is not None else _curve_from_plan(self._plan)

    def _measured_epoch_seconds(self, workers: int) -> float | None:
        values = [
            r.epoch_seconds
            for r in self._launches
            if r.workers == workers and r.epoch_seconds is not None
        ]
        return statistics.median(values) if values else None

    def _slowdown(self, launch: LaunchRecord) -> float:
        """The workload's contention for the launches that ran at once with ``launch`` (at its
        middle, itself included): what its measured times are slower than alone."""
        if self._workload is None or not any(
            factor != 1.0 for factor in self._workload.contention_by_launches.values()
        ):
            return 1.0
        middle = (launch.started_at + launch.finished_at) / 2.0
        at_once = sum(1 for r in self._launches if r.started_at <= middle < r.finished_at)
        return self._workload.contention_on(max(at_once, 1))

    def _measured_workload(self) -> Workload | None:
        """The workload as measured so far: epoch time, speedups, launch overhead, each as if
        alone (the measurements divided by their contention), with the workload's contention
        table, so that rungs running more or fewer launches at once are timed for that."""
        by_gpus: dict[int, list[float]] = {}
        overheads: list[float] = []
        for launch in self._launches:
            slowdown = self._slowdown(launch)
            if launch.epoch_seconds is not None:
                by_gpus.setdefault(launch.workers, []).append(launch.epoch_seconds / slowdown)
            if launch.overhead_seconds is not None:
                overheads.append(launch.overhead_seconds / slowdown)
        if not by_gpus or not overheads:
            return None
        t1, curve = measured_curve(
            self._curve(),
            {k: statistics.median(v) for k, v in by_gpus.items()},
            self._backend.slots,
        )
        return Workload(
            epoch_seconds=max(t1, 1e-6),
            scaling=curve,
            max_epochs=self._plan.max_epochs,
            gpus_per_node=self._workload.gpus_per_node if self._workload else self._backend.slots,
            startup_seconds=statistics.median(overheads),
            contention=self._workload.contention_by_launches if self._workload else 1.0,
        )

    def _replan(
        self, done: int, schedule_: list[Rung], alive: list[int], records: list[RungRecord]
    ) -> list[Rung]:
        """Re-time (and if needed re-plan) the rungs after ``done`` from measurements."""
        measured = self._measured_workload()
        rest = schedule_[done + 1 :]
        if measured is None or not alive:
            return schedule_
        now = self._backend.now()
        elapsed = now - self._t0
        left_s = self._plan.deadline_s - elapsed
        ledger = read_ledger(self._study, self._plan, now)
        left_dollars = ledger.remaining_dollars
        price = self._plan.price_per_gpu_second
        start = schedule_[done].resource

        def timed(n: Sequence[int], gpus: Sequence[int]) -> tuple[Rung, ...]:
            shapes = [RungShape(a, r.resource, k) for a, r, k in zip(n, rest, gpus)]
            return schedule(shapes, measured, price, self._limits, start)

        def shifted(rungs: Sequence[Rung]) -> list[Rung]:
            return [
                replace(r, index=done + 1 + i, start_s=r.start_s + elapsed, end_s=r.end_s + elapsed)
                for i, r in enumerate(rungs)
            ]

        n_now = [min(r.n_trials, len(alive)) for r in rest]
        current = timed(n_now, [r.gpus_per_trial for r in rest])
        fits = current[-1].end_s <= left_s and sum(r.cost for r in current) <= left_dollars
        planned_epoch = schedule_[done].epoch_seconds
        measured_epoch = records[-1].epoch_seconds
        # The plan's start-up at the rung's concurrency: launches at once slow each other's too.
        planned_start = (
            self._workload.startup_seconds
            * self._workload.contention_on(schedule_[done].concurrent_trials)
            if self._workload
            else 0.0
        )
        measured_start = records[-1].overhead_seconds or 0.0
        drift = (
            measured_epoch is not None
            and abs(measured_epoch - planned_epoch) > self._drift * planned_epoch
        ) or (
            planned_start > 0 and abs(measured_start - planned_start) > self._drift * planned_start
        )
        if fits and not drift:
            return schedule_[: done + 1] + shifted(current)
        why = (
            f"measured {measured_epoch if measured_epoch is not None else math.nan:.2f} s/epoch "
            f"on {schedule_[done].gpus_per_trial} worker(s) (plan {planned_epoch:.2f}) and "
            f"{measured_start:.1f} s per launch (plan {planned_start:.1f})"
        )
        candidates = gpu_candidates(measured, self._limits, self._plan.min_marginal_speedup)
        chosen: tuple[Rung, ...] | None = None
        outcome = ""
        for width in range(n_now[0], 0, -1):
            n = [min(x, width) for x in n_now]
            found = assign_gpus(
                n,
                [r.resource for r in rest],
                measured,
                price,
                self._limits,
                left_s,
                candidates,
                start_resource=start,
            )
            if found is not None and sum(r.cost for r in found) <= left_dollars:
                chosen = found
                if width < n_now[0]:
                    outcome = f"; only {width} survivor(s) can finish in time and budget"
                break
        if chosen is None:
            chosen = timed([1] * len(rest), [max(candidates)] * len(rest))
            outcome = (
                "; even one finalist cannot finish: it trains on the fastest workers and is "
                "stopped before the deadline"
            )
        new = shifted(chosen)
        old_gpus = [r.gpus_per_trial for r in rest]
        new_gpus = [r.gpus_per_trial for r in new]
        if fits and new_gpus == old_gpus and [r.n_trials for r in new] == n_now:
            self._say(
                f"re-timed after rung {done}: {why}; the remaining rungs still fit "
                f"(end {format_seconds(new[-1].end_s)} of {format_seconds(self._plan.deadline_s)})"
            )
        else:
            self._say(
                f"re-plan after rung {done}: {why}{outcome}; workers per trial {old_gpus} -> "
                f"{new_gpus}, trials {[r.n_trials for r in rest]} -> "
                f"{[r.n_trials for r in new]}, predicted end {format_seconds(new[-1].end_s)} "
                f"of {format_seconds(self._plan.deadline_s)} with "
                f"{format_seconds(left_s)} and ${left_dollars:,.2f} left"
            )
        prefix = [r.gpus_per_trial for r in schedule_[: done + 1]]
        storage, implicit = storage_of(self._study), self._implicit()
        for number in alive:
            placed = placement_of(self._trial(number), implicit)
            assert placed is not None, f"trial {number} runs but was never placed"
            storage.set_trial_system_attr(
                self._ids[number], TRIAL_PLACEMENT, {**placed, "gpus": prefix + new_gpus}
            )
        return schedule_[: done + 1] + new
