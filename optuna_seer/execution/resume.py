"""Continue a study whose ElasticTuner driver was killed or paused.

:func:`check_can_run` refuses a study this run must not start or continue
(:func:`plan_differences` says what differs from the stored run);
:func:`restore` rebuilds a run's :class:`~optuna_seer.execution.state.RunState` from the run
journal: the live trials, their last good checkpoints, their finished launches and retries,
and charges the launches the stopped driver left running (see :func:`lost_until`).
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from optuna_seer._optuna import trial_id_of
from optuna_seer.backends.base import Backend
from optuna_seer.execution.entry import SearchSpace
from optuna_seer.execution.journal import (
    HEARTBEAT_SECONDS,
    Progress,
    RunJournal,
    charged_of,
    launches_of,
)
from optuna_seer.execution.results import StudyMismatchError
from optuna_seer.execution.state import RunState
from optuna_seer.integration.trial_gpus import placement_of
from optuna_seer.planning.plan import Plan, Rung, format_seconds


def check_can_run(
    journal: RunJournal, plan: Plan, slots: int, *, resume: bool | str
) -> Progress | None:
    """The study's stored progress (``None``: a new study), once this run may start or
    continue it with ``plan`` on ``slots`` (``resume``: see ``ElasticTuner``).

    Raises:
        ValueError: The study has trials no ``ElasticTuner`` started; ``resume=False`` and
            the study was started; or ``resume=True`` and it was not.
        StudyMismatchError: It was started with another plan or slot count, or stopped by
            an error.
    """
    name = journal.study.study_name
    progress = journal.progress()
    if progress is None and journal.trials():
        raise ValueError(
            f"study {name!r} already has trials that no ElasticTuner started (there is no "
            "executor progress in its storage); use a new study_name for a SEER run."
        )
    if progress is not None and resume is False:
        raise ValueError(
            f"study {name!r} already has trials and resume=False wants a new study; "
            "continue it with resume='auto' (the default) or use a new study_name."
        )
    if progress is None and resume is True:
        raise ValueError(
            f"resume=True but study {name!r} was never started by an ElasticTuner: there "
            "is nothing to continue (resume='auto' starts it)."
        )
    if progress is None:
        return None
    differences = plan_differences(journal.stored_plan(), plan, progress.slots, slots)
    if differences:
        raise StudyMismatchError(
            f"study {name!r} was started with another plan: {'; '.join(differences)}. "
            "Run it again with its original settings to continue it, or start a new "
            "study under another name."
        )
    if progress.stopped:
        raise StudyMismatchError(
            f"study {name!r} was stopped by {progress.stopped} in rung {progress.rung} "
            "and its trials in play were told FAIL, so it cannot be continued; start a "
            "new study (another study_name)."
        )
    return progress


def plan_differences(
    then: Plan | None, now: Plan, stored_slots: int | None, slots: int
) -> list[str]:
    """What differs between the stored run (plan ``then``, ``stored_slots``) and this one;
    empty if it may be continued.

    Example:
        >>> plan_differences(None, None, 4, 2)  # no stored plan: only the slots compared
        ['slots 4 (stored) vs 2 (now)']
    """
    differences: list[str] = []
    if then is not None and not now.matches(then):
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
    if stored_slots is not None and stored_slots != slots:
        differences.append(f"slots {stored_slots} (stored) vs {slots} (now)")
    return differences


def lost_until(
    now: float, beat: float | None, paused: float | None, launches_end_with_driver: bool
) -> tuple[float, str]:
    """Until when the launches a stopped driver left running are charged, and why then.

    Up to ``now`` (an upper bound: nobody saw them end); those a Ctrl-C stopped (a pause
    newer than the last heartbeat), up to the pause; where launches end with the driver, up
    to two heartbeats past its last one.

    Example:
        >>> lost_until(100.0, 50.0, None, True)
        (60.0, "the driver's last heartbeat")
        >>> lost_until(100.0, 50.0, 70.0, True)
        (70.0, 'the Ctrl-C that paused the driver')
    """
    if paused is not None and (beat is None or paused >= beat):
        return min(now, paused), "the Ctrl-C that paused the driver"
    if launches_end_with_driver and beat is not None:
        return min(now, beat + 2 * HEARTBEAT_SECONDS), "the driver's last heartbeat"
    return now, "the resume"


def restore(
    progress: Progress,
    *,
    study: optuna.Study,
    journal: RunJournal,
    backend: Backend,
    state: RunState,
    plan: Plan,
    search_space: SearchSpace,
    sample: Callable[[int], None],
    say: Callable[[str], None],
) -> tuple[int, list[Rung], list[int]]:
    """Rebuild ``state`` from the journal; returns (rung, rungs, trials alive).

    Trials in play stop accruing over the downtime; a launch the stopped driver left in
    flight is charged from its start (or the trial's last charge) to :func:`lost_until`.
    A run killed while sampling finishes sampling first.
    """
    now = backend.now()
    index = progress.rung
    rungs = list(progress.rungs)
    state.notes = list(progress.notes)
    state.fallbacks = progress.fallbacks
    alive: list[int] = []
    lost_gpu_s = 0.0
    beat, paused = journal.driver_marks()
    until_s, until = lost_until(now, beat, paused, backend.launches_end_with_driver)
    implicit = journal.implicit()
    for trial in journal.trials():
        if placement_of(trial, implicit) is None:
            continue
        number = trial.number
        state.ids[number] = trial_id_of(trial)
        state.params[number] = dict(trial.params)
        state.states[number] = trial.state.name
        launches = launches_of(trial)
        state.launches.extend(launches)
        good = [r.checkpoint for r in launches if r.checkpoint is not None]
        state.resume[number] = good[-1] if good else None
        for r in launches:
            if r.rung == index and not r.failed:
                state.done_in_rung.add(number)
            if r.failed:
                state.retries[(number, r.rung)] = state.retries.get((number, r.rung), 0) + 1
        if trial.state != TrialState.RUNNING:
            continue
        alive.append(number)
        if not progress.sampled:
            # Killed while sampling: finish this trial's search space (parameters already
            # suggested keep their values).
            live = optuna.Trial(study, trial_id_of(trial))
            search_space(live)
            state.params[number] = dict(live.params)
        # Idle trials stop accruing over the downtime.
        seconds = 0.0
        in_flight = journal.in_flight(trial)
        if in_flight is not None and in_flight.launch >= len(launches):
            began = max(in_flight.started_at, journal.charged(trial)[1])
            seconds = max(until_s - began, 0.0) * in_flight.workers
            lost_gpu_s += seconds
        if in_flight is not None:
            journal.clear_in_flight(trial_id_of(trial))
        journal.charge(trial, seconds, now, implicit)
    if not progress.sampled:
        sample(plan.n_configs - len(state.ids))
        alive = [n for n in state.ids if state.states[n] == TrialState.RUNNING.name]
    state.launches.sort(key=lambda r: r.started_at)
    state.records_done = [state.with_launches(d) for d in progress.done]
    state.charged_gpu_s = sum(charged_of(t)[0] for t in journal.trials())
    alive.sort()
    say(
        f"resumed study {study.study_name!r} at rung {index} "
        f"({format_seconds(now - state.t0)} after it started): {len(alive)} trial(s) in "
        f"play, {len(state.done_in_rung)} of them already through this rung, "
        f"{len(state.launches)} earlier launch(es); {lost_gpu_s:,.1f} slot-seconds charged "
        f"for launches the stopped driver left running (up to {until})"
    )
    return index, rungs, alive
