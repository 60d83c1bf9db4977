"""ElasticTuner: execute a SEER plan rung by rung, resizing trials through checkpoints.

Optuna cannot pause a trial, so the executor keeps each trial ``RUNNING`` across its
launches and tells Optuna ``PRUNED`` or ``COMPLETE`` itself. For every rung it

1. launches each surviving trial on the backend with the rung's workers (GPUs), from the
   trial's last rung-end checkpoint, in waves when the slots do not fit them all at once
   (:mod:`~optuna_seer.execution.rung`);
2. waits until every launch has reported the rung's cumulative epochs (the training script
   reports through the storage and checkpoints at the end: ``SeerCallback`` or
   ``TrialContext.report``/``save_checkpoint``);
3. charges each trial's measured worker-seconds to the study's ledger;
4. asks ``SeerPruner.decide_rung`` who survives and tells Optuna ``PRUNED`` for the rest;
5. compares measured epoch and launch times with the plan and, when the remaining rungs
   would miss the deadline or the budget (or the measurements drift by more than
   ``drift_tolerance``), re-plans the rest (:mod:`~optuna_seer.execution.replanner`),
   shrinking the survivors if even that cannot meet them, and says what changed.

The finalists are told ``COMPLETE`` with their last reported value. Near the deadline
running trials are asked to stop after their current epoch (they still checkpoint); at the
deadline they are stopped (:mod:`~optuna_seer.execution.guard`).

A failed launch is launched again from the trial's last good checkpoint on fresh workers,
at most ``max_launch_retries`` times per trial and rung (its cost stays charged). The run's
progress lives in the study's storage (:mod:`~optuna_seer.execution.journal`), so the same
driver run again continues a study whose driver was killed or paused with Ctrl-C, returns
the stored result of one that finished, and refuses one started with another plan with
:class:`StudyMismatchError` (:mod:`~optuna_seer.execution.resume`).

Each decision is kept in ``TuningResult.notes`` and, with ``progress=True``, logged at INFO
under Optuna's logger tree (``optuna.optuna_seer.execution.tuner``, so
``optuna.logging.set_verbosity`` governs it) beside a ``tqdm`` bar per rung.
"""

from __future__ import annotations

from collections.abc import Sequence
import contextlib
from dataclasses import replace
from pathlib import Path

import optuna
from optuna.trial import TrialState

from optuna_seer._logging import get_logger
from optuna_seer._optuna import storage_of, trial_id_of
from optuna_seer._secrets import scrub
from optuna_seer.backends.base import Backend
from optuna_seer.execution.driver_lock import DriverLock, DriverLockedError
from optuna_seer.execution.entry import SearchSpace, TrainTarget, entrypoint_of, search_space_of
from optuna_seer.execution.guard import spent_dollars
from optuna_seer.execution.journal import HEARTBEAT_SECONDS, Progress, RunJournal, launches_of
from optuna_seer.execution.measurement import measured_workload
from optuna_seer.execution.naming import resumable_study_name
from optuna_seer.execution.replanner import Policy, Standing, replan
from optuna_seer.execution.results import LaunchRecord, RungRecord, StudyMismatchError, TuningResult
from optuna_seer.execution.resume import check_can_run, restore
from optuna_seer.execution.rung import LaunchSettings, RungRunner
from optuna_seer.execution.state import RunState
from optuna_seer.execution.tuner_arguments import check_settings, check_study
from optuna_seer.integration.ranking import best_finalist
from optuna_seer.integration.trial_gpus import placement_of
from optuna_seer.planning.cost_model import ClusterLimits
from optuna_seer.planning.plan import Plan, Rung, format_seconds
from optuna_seer.planning.workload import Workload
from optuna_seer.storage.urls import storage_url_of

__all__ = [
    "HEARTBEAT_SECONDS",
    "DriverLockedError",
    "ElasticTuner",
    "LaunchRecord",
    "RungRecord",
    "SearchSpace",
    "StudyMismatchError",
    "TuningResult",
    "entrypoint_of",
    "resumable_study_name",
    "search_space_of",
]

_logger = get_logger(__name__)


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
        progress: Show a ``tqdm`` progress bar per rung (dollars spent, time left, best value)
            and log what the executor decides (INFO, under Optuna's logger).
        max_launch_retries: How many times a failed launch of a trial is started again in the
            same rung (from the trial's last good checkpoint, on fresh workers) before the
            trial is told ``FAIL``. Retries are not started once the deadline or budget guard
            has asked running trials to stop.
        resume: What to do with a study an ``ElasticTuner`` already started. ``"auto"``
            (default): continue it if it did not finish (its driver killed, or paused with
            Ctrl-C), rebuilding the run from the storage (:mod:`~optuna_seer.execution.resume`
            says how the launches the driver left are charged); return its stored result,
            running nothing, if it finished; start it if it is new. ``True``/``False``: the
            study must have been started/must be new (else ``ValueError``). A stored plan or
            slot count that differs from this one raises :class:`StudyMismatchError`; a
            study another live driver runs, :class:`DriverLockedError`.

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
        train: TrainTarget,
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
        pruner = check_study(study, plan, backend)
        root = check_settings(checkpoints, workload, poll_seconds, max_launch_retries, resume)
        entrypoint = entrypoint_of(train)
        space = search_space if search_space is not None else search_space_of(train)
        if not callable(space):
            raise TypeError(f"search_space={search_space!r} must be callable(trial).")
        self._study = study
        self._pruner = pruner
        self._plan = pruner.plan
        self._backend = backend
        self._search_space: SearchSpace = space
        self._workload = workload
        self._policy = Policy(
            deadline_s=self._plan.deadline_s,
            price_per_gpu_second=self._plan.price_per_gpu_second,
            limits=limits or ClusterLimits(max_gpus=backend.slots),
            min_marginal_speedup=self._plan.min_marginal_speedup,
            drift_tolerance=drift_tolerance,
            planned=workload,
        )
        self._progress = progress
        self._resume_mode: bool | str = resume
        self._journal = RunJournal(study, clock=backend.now)
        self._lock = DriverLock(self._journal)
        self._state = RunState()
        self._rungs = RungRunner(
            backend,
            self._journal,
            self._plan,
            workload,
            LaunchSettings(
                study_name=study.study_name,
                storage_url=storage_url or storage_url_of(storage_of(study)),
                entrypoint=entrypoint,
                checkpoint_root=root if "://" in root else str(Path(root).resolve()),
                poll_seconds=poll_seconds,
                max_retries=max_launch_retries,
                progress=progress,
                maximize=study.direction == optuna.study.StudyDirection.MAXIMIZE,
            ),
            self._state,
            self._say,
            self._tell,
        )

    # ----------------------------------------------------------------- helpers
    def _say(self, message: str) -> None:
        message = scrub(message)  # notes quote workers' errors; they are stored and logged
        self._state.notes.append(message)
        if self._progress:
            _logger.info(message)

    def _tell(self, number: int, state: TrialState, reason: str | None = None) -> None:
        trial_id = self._state.ids[number]
        if reason is not None:
            self._journal.set_stop_reason(trial_id, reason)
        self._journal.close_account(trial_id, self._backend.now)
        if state == TrialState.COMPLETE:
            trial = self._journal.trial(trial_id)
            value = trial.intermediate_values[trial.last_step]  # type: ignore[index]
            self._study.tell(number, value)
        else:
            self._study.tell(number, state=state)
        self._state.states[number] = state.name

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
            DriverLockedError: Another driver runs the study (one study, one driver: see
                :mod:`~optuna_seer.execution.driver_lock`); nothing was touched.
        """
        self._lock = DriverLock(self._journal)
        self._lock.acquire()
        try:
            return self._run()
        finally:
            self._lock.release()

    def _run(self) -> TuningResult:
        study, backend, state = self._study, self._backend, self._state
        progress = check_can_run(
            self._journal, self._plan, self._backend.slots, resume=self._resume_mode
        )
        state.t0 = self._journal.start_clock(backend.now())
        if progress is not None and progress.finished_at is not None:
            return self._stored_result(progress)
        rungs: list[Rung] = list(self._plan.rungs)
        records: list[RungRecord] = []
        index = 0
        try:
            if progress is not None:
                index, rungs, alive = restore(
                    progress,
                    study=study,
                    journal=self._journal,
                    backend=backend,
                    state=state,
                    plan=self._plan,
                    search_space=self._search_space,
                    sample=self._sample,
                    say=self._say,
                )
                records = list(state.records_done)
            else:
                # Saved before sampling, so a driver killed while sampling is resumed too.
                self._save_progress(0, rungs, records, sampled=False)
                self._sample(self._plan.n_configs)
                alive = list(state.ids)
                self._say(
                    f"{len(alive)} configurations sampled; plan: {len(rungs)} rungs, "
                    f"{format_seconds(self._plan.predicted_seconds)} and "
                    f"${self._plan.predicted_cost:,.2f} predicted"
                )
            # (Nothing alive: killed after the last trial was told, before it saved that.)
            while index < len(rungs) and alive:
                self._lock.check()
                rung = rungs[index]
                self._save_progress(index, rungs, records)
                record, alive, cut_short = self._rungs.run(rung, alive, rungs)
                records.append(record)
                if cut_short:
                    self._finish_early(alive, rung, cut_short)
                    break
                if index == len(rungs) - 1:
                    for number in alive:
                        self._tell(number, TrialState.COMPLETE)
                    break
                alive = self._decide(index, alive, records)
                rungs = self._replan(index, rungs, alive, records)
                keep = rungs[index + 1].n_trials
                for number in alive[keep:]:
                    self._tell(
                        number,
                        TrialState.PRUNED,
                        f"re-plan after rung {index}: only the best {keep} can finish in time",
                    )
                alive = alive[:keep]
                index += 1
        except BaseException as exc:
            backend.release()
            if isinstance(exc, DriverLockedError):
                raise  # another driver runs the study now: leave it alone
            if isinstance(exc, KeyboardInterrupt):
                # Ctrl-C pauses: the trials stay in play and the same command continues the
                # study, charging the launches just stopped up to this moment.
                with contextlib.suppress(Exception):  # the storage may be what failed
                    self._journal.mark_paused(backend.now())
                raise
            for number, trial_state in state.states.items():
                if trial_state == TrialState.RUNNING.name:
                    self._tell(number, TrialState.FAIL, "executor stopped by an error")
            with contextlib.suppress(Exception):  # the storage may be what failed
                self._save_progress(index, rungs, records, stopped=type(exc).__name__)
            raise
        backend.release()
        finished = backend.now()
        self._save_progress(index, rungs, records, finished_at=finished)
        return self._result(records, rungs, finished)

    def _sample(self, count: int) -> None:
        """Ask Optuna for ``count`` more configurations (stops at the plan's width)."""
        state = self._state
        for _ in range(count):
            trial = self._study.ask()
            if self._journal.beyond_plan(trial_id_of(trial)):
                self._study.tell(trial, state=TrialState.PRUNED)
                break
            self._search_space(trial)
            state.ids[trial.number] = trial_id_of(trial)
            state.params[trial.number] = dict(trial.params)
            state.resume[trial.number] = None
            state.states[trial.number] = TrialState.RUNNING.name

    def _save_progress(
        self,
        index: int,
        rungs: Sequence[Rung],
        records: Sequence[RungRecord],
        *,
        sampled: bool = True,
        finished_at: float | None = None,
        stopped: str | None = None,
    ) -> None:
        state = self._state
        self._journal.save_progress(
            Progress(
                rung=index,
                rungs=tuple(rungs),
                slots=self._backend.slots,
                sampled=sampled,
                done=tuple(records),
                notes=tuple(state.notes),
                retried=state.retried,
                fallbacks=state.fallbacks,
                finished_at=finished_at,
                stopped=stopped,
            )
        )

    def _stored_result(self, progress: Progress) -> TuningResult:
        """The result of a study that already finished, read back from the storage."""
        state = self._state
        implicit = self._journal.implicit()
        for trial in self._journal.trials():
            if placement_of(trial, implicit) is None:
                continue
            state.states[trial.number] = trial.state.name
            state.launches.extend(launches_of(trial))
        state.launches.sort(key=lambda r: r.started_at)
        state.notes = list(progress.notes)
        finished = progress.finished_at
        assert finished is not None, "only a finished study has a stored result"
        self._say(
            f"study {self._study.study_name!r} already finished "
            f"({format_seconds(finished - state.t0)} after it started): nothing was run, this "
            "is its stored result; start a new run under another study name"
        )
        result = self._result(
            [state.with_launches(d) for d in progress.done], list(progress.rungs), finished
        )
        return replace(
            result,
            retried_launches=progress.retried,
            checkpoint_fallbacks=progress.fallbacks,
            reloaded=True,
        )

    def _result(self, records: list[RungRecord], rungs: list[Rung], now: float) -> TuningResult:
        state = self._state
        trials = self._journal.trials()
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        # SEER's selection rule, not Optuna's best_trial: the finalist with the highest mean
        # over the last rung (then the last value), a steadier estimate than one last epoch.
        since = rungs[-2].resource if len(rungs) > 1 else 0
        best = best_finalist(complete, since, self._plan.max_epochs, self._study.direction)
        return TuningResult(
            study_name=self._study.study_name,
            plan=self._plan,
            final_plan=replace(self._plan, rungs=tuple(rungs)),
            best_trial=best,
            rungs=tuple(records),
            launches=tuple(state.launches),
            ledger=self._journal.ledger(self._plan, now, trials),
            slots=self._backend.slots,
            wall_seconds=now - state.t0,
            notes=tuple(state.notes),
            trial_states=dict(state.states),
            retried_launches=state.retried,
            checkpoint_fallbacks=state.fallbacks,
        )

    # ----------------------------------------------------------------- between rungs
    def _finish_early(self, alive: list[int], rung: Rung, why: str) -> None:
        """Close the trials still in play when the deadline or budget cut a rung short."""
        max_epochs = self._plan.max_epochs
        for number in alive:
            trial = self._journal.trial(self._state.ids[number])
            if trial.last_step is not None and trial.last_step >= max_epochs:
                self._tell(number, TrialState.COMPLETE)
            elif trial.last_step is None:
                self._tell(number, TrialState.PRUNED, f"{why}: never reported a value")
            else:
                self._tell(
                    number,
                    TrialState.COMPLETE,
                    f"{why}: stopped after {trial.last_step} of {max_epochs} epochs",
                )
        self._say(
            f"{why} reached in rung {rung.index}: {len(alive)} trial(s) in play told COMPLETE "
            "with their last reported value"
        )

    def _decide(self, index: int, alive: list[int], records: list[RungRecord]) -> list[int]:
        decision = self._pruner.decide_rung(self._study, index)
        promoted = [n for n in decision.promoted if n in alive]
        eliminated = [n for n in alive if n not in promoted]
        for number in eliminated:
            self._tell(number, TrialState.PRUNED)
        records[-1] = replace(records[-1], promoted=tuple(promoted), eliminated=tuple(eliminated))
        return promoted

    def _replan(
        self, done: int, rungs: list[Rung], alive: list[int], records: list[RungRecord]
    ) -> list[Rung]:
        """Re-time (and if needed re-plan) the rungs after ``done`` from measurements, and
        place the trials in play on the new workers."""
        state, journal = self._state, self._journal
        measured = measured_workload(
            state.launches, self._workload, self._plan, self._backend.slots
        )
        if measured is None or not alive:
            return rungs
        now, billed = self._backend.now(), self._backend.billed_dollars
        standing = Standing(
            done=done,
            alive=len(alive),
            elapsed_s=now - state.t0,
            # What the rungs' guard counts spent: survivors' wait between launches is not.
            left_dollars=self._plan.budget_dollars
            - spent_dollars(state.charged_gpu_s, self._plan.price_per_gpu_second, billed),
            epoch_seconds=records[-1].epoch_seconds,
            startup_seconds=records[-1].overhead_seconds,
        )
        new = replan(rungs, standing, measured, self._policy)
        if new.note:
            self._say(new.note)
        if new.revised:
            workers, implicit = new.workers, journal.implicit()
            for number in alive:
                placed = placement_of(journal.trial(state.ids[number]), implicit)
                assert placed is not None, f"trial {number} runs but was never placed"
                journal.set_placement(state.ids[number], {**placed, "gpus": workers})
        return list(new.rungs)
