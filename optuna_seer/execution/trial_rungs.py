"""Train a ``study.optimize`` trial rung by rung on leased workers: :func:`rungs`.

Inside an objective, ``for rung in rungs(trial): value = rung.run(train, params)`` trains the
trial one rung of the SEER plan at a time. Each :meth:`TrialRung.run`

1. leases the rung's workers from the pool (this machine's GPUs, else CPU slots) through the
   study's storage (:mod:`optuna_seer.integration.leases`), waiting while other trials hold
   them, so a survivor's later rungs run on the plan's larger worker count and the study
   never uses more workers than the pool has, across threads and processes;
2. launches the training program on them with :class:`~optuna_seer.backends.LocalBackend`,
   exactly as :class:`~optuna_seer.ElasticTuner` launches a rung
   (:func:`~optuna_seer.execution.rung.launch_spec`): one process, or a ``torchrun`` DDP
   world (NCCL across GPUs, gloo across CPU processes), resuming from the trial's last
   checkpoint. A launch trains through every following rung on the same number of workers:
   a survivor that keeps its worker count goes on in the same processes, and pays start-up
   again only when it is resized;
3. asks the pruner after every epoch the workers report (deadline, budget, displaced), so a
   stop reaches the workers at their next epoch, and at the rung's end (promotion);
4. returns the value at the rung's end (and the workers, when the launch ends there), or
   stops the launch, returns the workers and raises ``optuna.TrialPruned`` with SEER's stop
   reason (Optuna logs it: "Trial 7 pruned. rung 0: 0.81 not in the top ...").

A trial whose process is killed stops beating; the next trial start (or lease wait) fails it
and its lease returns with it (:mod:`optuna_seer.integration.heartbeat`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
import os
from pathlib import Path
import random
import re
import tempfile
import threading
import time
from typing import Any

import optuna

from optuna_seer._logging import get_logger
from optuna_seer._optuna import storage_of, study_id_of, trial_id_of
from optuna_seer._secrets import scrub
from optuna_seer.backends.base import LaunchState
from optuna_seer.backends.local import LocalBackend
from optuna_seer.execution.entry import TrainTarget, entrypoint_of
from optuna_seer.execution.final_seat import wait_for_final_seat
from optuna_seer.execution.rung import launch_spec, trial_checkpoint_uri
from optuna_seer.execution.worker_pool import WorkerPool
from optuna_seer.integration.admission import DEADLINE_LAST_RUNG
from optuna_seer.integration.clock import study_time
from optuna_seer.integration.heartbeat import DeadTrialScan
from optuna_seer.integration.keys import (
    STUDY_STARTED_AT,
    TRIAL_STOP_REASON,
    launch_timing_key,
    stop_reason,
)
from optuna_seer.integration.leases import LeaseError, acquire, check_pool, release
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.planning.plan import Plan, format_seconds
from optuna_seer.storage.urls import storage_url_of
from optuna_seer.worker.context import checkpoint_name, checkpoint_object_uri

_logger = get_logger(__name__)

DEFAULT_CHECKPOINTS = "seer-checkpoints"
"""Where trials' checkpoints go unless ``checkpoints=`` says (relative to the working
directory)."""


_STOP_GRACE_S = 120.0
"""How long a launch told to stop (or done training) may take to checkpoint and exit."""


@dataclass
class _Live:
    """The launch a trial trains in: it runs rungs ``first_rung`` .. ``last_rung``."""

    backend: LocalBackend
    handle: str
    first_rung: int
    last_rung: int
    workers: int
    started: float
    waited: float
    seen: int


@dataclass
class LaunchTiming:
    """How one launch spent its time: waiting for workers, starting, training; it trained
    ``rungs`` rungs from rung ``rung`` on (a survivor keeping its workers stays in it)."""

    rung: int
    workers: int
    wait_s: float
    wall_s: float
    train_s: float | None
    rungs: int = 1

    @property
    def overhead_s(self) -> float | None:
        """Start-up (processes, rendezvous, checkpoint load): the launch minus its training."""
        return None if self.train_s is None else max(self.wall_s - self.train_s, 0.0)


@dataclass
class TrialRung:
    """One rung of a trial: run it with :meth:`run`. See the module docstring."""

    index: int
    end_epoch: int
    workers: int
    _runner: _TrialRunner = field(repr=False)
    ran: bool = field(default=False, repr=False)

    @property
    def last(self) -> bool:
        """Whether this is the plan's last rung (its value is the trial's result)."""
        return self.index == len(self._runner.plan.rungs) - 1

    def run(self, train: TrainTarget, params: Mapping[str, Any] | None = None) -> float:
        """Train to this rung's end on its leased workers; the value at the rung's end.

        Args:
            train: The training program (a script, ``"file.py:function"``,
                ``"module:function"`` or a module-level function) that reads
                :func:`~optuna_seer.trial_context` and reports every epoch (``SeerCallback``
                for Lightning).
            params: The hyperparameters the workers get (``SEER_PARAMS``); default: the
                trial's suggested ``trial.params``.

        Raises:
            optuna.TrialPruned: SEER stopped the trial (the message says why).
            RuntimeError: The launch failed (the message has its log's last lines).
        """
        if self.ran:
            raise RuntimeError(f"rung {self.index} of this trial already ran.")
        self.ran = True
        return self._runner.run(self, entrypoint_of(train), params)


class _TrialRunner:
    def __init__(
        self,
        trial: optuna.Trial,
        pool: WorkerPool,
        checkpoints: str,
        storage_url: str,
        log_dir: Path | None,
        poll_seconds: float,
        env: Mapping[str, str],
    ) -> None:
        pruner = trial.study.pruner
        assert isinstance(pruner, SeerPruner)
        self.trial = trial
        self.pruner = pruner
        self.plan: Plan = pruner.plan
        self.pool = pool
        self.checkpoints = checkpoints
        self.storage_url = storage_url
        self.log_dir = log_dir
        self.poll_seconds = poll_seconds
        self.env = dict(env)
        self.timings: list[LaunchTiming] = []
        self.live: _Live | None = None
        self._storage = storage_of(trial.study)
        self._trial_id = trial_id_of(trial)

    @property
    def trial_uri(self) -> str:
        return trial_checkpoint_uri(
            self.checkpoints, self.trial.study.study_name, self.trial.number
        )

    def _now(self) -> float:
        return study_time(self.trial.study, self.pruner.clock)

    def _deadline(self) -> float | None:
        started = self._storage.get_study_system_attrs(study_id_of(self.trial.study)).get(
            STUDY_STARTED_AT
        )
        return None if started is None else float(started) + self.plan.deadline_s

    def _resume_from(self, rung: int) -> str | None:
        """The last rung-end checkpoint the trial's workers wrote before ``rung``."""
        attrs = self._storage.get_trial(self._trial_id).system_attrs
        for earlier in range(rung - 1, -1, -1):
            if launch_timing_key(earlier) in attrs:
                return checkpoint_object_uri(self.trial_uri, checkpoint_name(earlier))
        return None

    def _lease(self, rung: TrialRung) -> tuple[tuple[int, ...], float]:
        """Wait for the rung's workers; (slots, seconds waited)."""
        study, started = self.trial.study, time.monotonic()
        scan = DeadTrialScan(study)  # a killed process's trial holds a lease
        while True:
            slots = acquire(
                study,
                self.trial.number,
                pool=self.pool.name,
                size=self.pool.size,
                workers=rung.workers,
                rung=rung.index,
                now=self._now(),
            )
            if slots is not None:
                return slots, time.monotonic() - started
            deadline = self._deadline()
            if deadline is not None and self._now() >= deadline:
                self._stop(f"deadline: passed while rung {rung.index} waited for workers")
            scan()
            time.sleep(self.poll_seconds * (0.5 + random.random()))

    def _should_prune(self) -> bool:
        # The workers report through the storage, not through this process's optuna.Trial
        # (whose cached copy lacks their values): ask the pruner with the stored trial.
        return self.pruner.prune(self.trial.study, self._storage.get_trial(self._trial_id))

    def _stop(self, reason: str) -> None:
        self._storage.set_trial_system_attr(self._trial_id, TRIAL_STOP_REASON, reason)
        raise optuna.TrialPruned(reason)

    def run(self, rung: TrialRung, entrypoint: str, params: Mapping[str, Any] | None) -> float:
        """Train ``rung`` to its end: in the launch that already runs it (a survivor that
        keeps its workers), else in a new launch on freshly leased workers."""
        live = self.live
        if live is None or live.last_rung < rung.index:
            self.close()
            if rung.last and rung.index > 0:
                wait_for_final_seat(
                    self.trial.study, self.trial.number, self.pruner, self.poll_seconds
                )
            slots, waited = self._lease(rung)
            try:
                self.live = live = self._launch(rung, slots, waited, entrypoint, params)
            except BaseException:
                release(self.trial.study, self.trial.number, now=self._now())
                raise
        try:
            value = self._follow(live, rung)
        except BaseException:
            self.close()
            raise
        if rung.index == live.last_rung:
            self._finish(live)
        return value

    def _launch(
        self,
        rung: TrialRung,
        slots: tuple[int, ...],
        waited: float,
        entrypoint: str,
        params: Mapping[str, Any] | None,
    ) -> _Live:
        trial, plan = self.trial, self.plan
        last = self.plan.launch_through(rung.index)
        backend = LocalBackend(
            slots=rung.workers,
            gpus=self.pool.gpus_of(slots),
            log_dir=self.log_dir,
            env=self.env,
        )
        spec = launch_spec(
            study_name=trial.study.study_name,
            storage_url=self.storage_url,
            trial_number=trial.number,
            params=trial.params if params is None else params,
            rung=replace(plan.rungs[rung.index], resource=plan.rungs[last].resource),
            checkpoint_uri=self.trial_uri,
            resume_from=self._resume_from(rung.index),
            max_epochs=plan.max_epochs,
            entrypoint=entrypoint,
        )
        started = time.monotonic()
        handle = backend.start(spec)
        seen = self._storage.get_trial(self._trial_id).last_step or 0
        return _Live(backend, handle, rung.index, last, rung.workers, started, waited, seen)

    def _follow(self, live: _Live, rung: TrialRung) -> float:
        """Wait until the trial reports ``rung``'s end (its value) or its launch ends, asking
        the pruner at every new epoch; raises ``TrialPruned`` when it says stop."""
        while True:
            done = live.backend.wait([live.handle], self.poll_seconds)
            frozen = self._storage.get_trial(self._trial_id)
            step = frozen.last_step or 0
            if step > live.seen:
                live.seen = step
                if self._should_prune():
                    return self._prune(live, rung)
                if step >= rung.end_epoch:
                    values = frozen.intermediate_values
                    return float(values.get(rung.end_epoch, values[step]))
            if done:
                break
        status = live.backend.poll(live.handle)
        self._finish(live)
        reason = stop_reason(self._storage.get_trial(self._trial_id))
        if reason is not None:
            raise optuna.TrialPruned(reason)
        if status.state is LaunchState.FAILED:
            raise RuntimeError(
                f"trial {self.trial.number}, rung {rung.index}: the launch on {rung.workers} "
                f"worker(s) failed: {scrub(status.message)[-1500:]}"
            )
        raise RuntimeError(
            f"trial {self.trial.number}, rung {rung.index}: the training program exited "
            f"without reporting epoch {rung.end_epoch} (last reported: {live.seen or None}); "
            "report every epoch with SeerCallback or TrialContext.report."
        )

    def _prune(self, live: _Live, rung: TrialRung) -> float:
        """The pruner stopped the trial: tell its workers (they stop after their epoch and
        checkpoint), let the launch end, return the workers, raise ``TrialPruned``; or, for
        a finalist the deadline ends inside the last rung, return its last value."""
        frozen = self._storage.get_trial(self._trial_id)
        reason = stop_reason(frozen) or "pruned by SeerPruner"
        if TRIAL_STOP_REASON not in frozen.system_attrs:
            self._storage.set_trial_system_attr(self._trial_id, TRIAL_STOP_REASON, reason)
        if not live.backend.wait([live.handle], _STOP_GRACE_S):
            live.backend.stop(live.handle)
        self._finish(live)
        if rung.last and reason.startswith(DEADLINE_LAST_RUNG):
            values = self._storage.get_trial(self._trial_id).intermediate_values
            return float(values[max(values)])
        raise optuna.TrialPruned(reason)

    def _finish(self, live: _Live) -> None:
        """The launch is over (or asked to end): wait for it, time it, return the workers."""
        if self.live is not live:
            return
        self.live = None
        try:
            if not live.backend.wait([live.handle], _STOP_GRACE_S):
                live.backend.stop(live.handle)
            attrs = self._storage.get_trial(self._trial_id).system_attrs
            timing = attrs.get(launch_timing_key(live.first_rung))
            record = LaunchTiming(
                rung=live.first_rung,
                workers=live.workers,
                wait_s=live.waited,
                wall_s=time.monotonic() - live.started,
                train_s=None if timing is None else float(timing["train_seconds"]),
                rungs=live.last_rung - live.first_rung + 1,
            )
            self.timings.append(record)
            _logger.info(
                "trial %d rungs %s: %d worker(s), waited %s, launch %s (start-up %s)",
                self.trial.number,
                f"{live.first_rung}-{live.last_rung}"
                if live.last_rung > live.first_rung
                else str(live.first_rung),
                live.workers,
                format_seconds(record.wait_s),
                format_seconds(record.wall_s),
                "-" if record.overhead_s is None else format_seconds(record.overhead_s),
            )
        finally:
            live.backend.release()
            release(self.trial.study, self.trial.number, now=self._now())

    def close(self) -> None:
        """End the trial's launch, if one still runs, and return its workers."""
        if self.live is not None:
            self._finish(self.live)


_LOG_DIRS: dict[tuple[str, str], Path] = {}
_LOG_DIRS_LOCK = threading.Lock()


def study_log_dir(study_name: str, storage_url: str) -> Path:
    """The temporary directory this process's launches of the study log to, made at the
    first launch (by whichever of ``study.optimize``'s threads comes first) and named in the
    log (one per launch, before, left thousands behind)."""
    with _LOG_DIRS_LOCK:
        directory = _LOG_DIRS.get((study_name, storage_url))
        if directory is None:
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", study_name)[:40]
            directory = Path(tempfile.mkdtemp(prefix=f"seer-logs-{safe}-"))
            _LOG_DIRS[(study_name, storage_url)] = directory
            _logger.info("launch logs of study %r go to %s", study_name, directory)
        return directory


def rungs(
    trial: optuna.Trial,
    *,
    pool: WorkerPool | None = None,
    checkpoints: str | os.PathLike[str] = DEFAULT_CHECKPOINTS,
    storage_url: str | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    poll_seconds: float = 1.0,
    env: Mapping[str, str] | None = None,
) -> Iterator[TrialRung]:
    """The rungs ``trial`` still has to train, each on the plan's workers; see the module.

    Args:
        trial: The live trial of an objective in a study with ``SeerSampler`` and
            ``SeerPruner``, stored where worker processes can reach it (SQLite or another
            RDB, a journal file, a gRPC proxy).
        pool: The workers trials lease (:meth:`WorkerPool.of_machine` by default: every
            visible GPU, else CPU processes); every process of the study must give a pool of
            one name the same size.
        checkpoints: Directory (or ``s3://`` prefix) for the trials' rung-end checkpoints.
        storage_url: The URL workers open the study with (default: the study's own).
        log_dir: Where launch logs go (``trial-<n>-rung-<r>.log``); by default one
            temporary directory per study and process (:func:`study_log_dir`).
        poll_seconds: How often the launch and the leases are polled.
        env: Extra environment variables for the workers.

    Example:
        >>> def objective(trial):  # doctest: +SKIP
        ...     params = {"lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True)}
        ...     for rung in optuna_seer.rungs(trial):
        ...         value = rung.run("train.py:train", params)
        ...     return value
    """
    if not isinstance(trial, optuna.Trial):
        raise TypeError(f"trial={trial!r} must be the optuna.Trial an objective receives.")
    pruner = trial.study.pruner
    if not isinstance(pruner, SeerPruner):
        raise ValueError(
            f"rungs(trial) needs a study created with pruner=SeerPruner(...) and "
            f"sampler=SeerSampler(...); this study's pruner is {type(pruner).__name__}."
        )
    if not (isinstance(poll_seconds, int | float) and poll_seconds > 0):
        raise ValueError(f"poll_seconds={poll_seconds!r} must be a positive number.")
    pool = pool or WorkerPool.of_machine()
    plan = pruner.plan
    widest = max(r.gpus_per_trial for r in plan.rungs)
    if widest > pool.size:
        raise LeaseError(
            f"the plan gives a trial {widest} workers but pool {pool.name!r} has {pool.size}: "
            f"plan with ClusterLimits(max_gpus={pool.size})."
        )
    check_pool(trial.study, pool.name, pool.size)
    storage_url = storage_url or storage_url_of(storage_of(trial.study))
    runner = _TrialRunner(
        trial,
        pool,
        os.fspath(checkpoints),
        storage_url,
        study_log_dir(trial.study.study_name, storage_url) if log_dir is None else Path(log_dir),
        float(poll_seconds),
        env or {},
    )
    done = trial.storage.get_trial(trial_id_of(trial)).last_step or 0
    try:
        for planned in plan.rungs:
            if planned.resource <= done:
                continue
            rung = TrialRung(planned.index, planned.resource, planned.gpus_per_trial, runner)
            yield rung
            if not rung.ran:
                raise RuntimeError(
                    f"trial {trial.number}: rung {planned.index} was not run; call "
                    "rung.run(...) once in every iteration of rungs(trial)."
                )
    finally:
        runner.close()  # an objective that leaves the loop early leaves no launch behind
