"""Parked trials and their re-runs: the last rung keeps the plan's width on the plain path.

A trial that trains in its own thread or process (plain ``report``/``should_prune``, no leased
workers) cannot wait between rungs without holding its worker, and with one worker nothing
else would run while it waited. So when it reaches the last rung's door before the rest of
its rung has reported, going on would make it a finalist on the values seen so far, and a
better trial reporting later would make one finalist too many. At that door
:class:`~optuna_seer.SeerPruner` therefore:

* stops it when the plan's last width of trials beat it (as before);
* gives it a seat when it stays in the top width even if every trial that may still report
  there beats it (:func:`pending_arrivals`: running configurations without a value there, and
  places not taken yet);
* otherwise **parks** it: prunes it with the reason, its rung-end record flagged
  :data:`PARKED`, when a re-run could still train every rung by the deadline (else ASHA's
  rule decides, as before).

Once the door's values are all in, :class:`~optuna_seer.SeerSampler` gives the next trials
asked beyond the plan's width the configurations of the parked trials that rank in the top
width, best first, while seats are free (:func:`door_state`). A re-run trains that
configuration again (its system attr :data:`~optuna_seer.integration.keys.TRIAL_RERUN_OF`);
its values count once, as the parked trial's
(:func:`~optuna_seer.integration.keys.counted_rank`); it passes the earlier rungs (budget and
deadline still apply) and takes its seat at the door. An objective that checkpoints per trial
resumes the parked trial's checkpoint (:func:`rerun_of`), as objectives do for Optuna's
``RetryFailedTrialCallback.retried_trial_number``; one that does not trains the configuration
from its first epoch.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from dataclasses import dataclass
import time

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_seer._logging import get_logger
from optuna_seer._optuna import fresh_trials, storage_of, study_id_of, trial_id_of
from optuna_seer.integration.admission import SpendView, placed, stopped
from optuna_seer.integration.heartbeat import fail_dead_trials
from optuna_seer.integration.keys import (
    STUDY_STARTED_AT,
    TRIAL_AWAITING_RERUN,
    TRIAL_BEYOND_PLAN,
    TRIAL_LEASE,
    TRIAL_RERUN_OF,
    counted_rank,
    rung_end_key,
    rung_rank,
)
from optuna_seer.integration.seats import seat_holders
from optuna_seer.planning.plan import Plan

_logger = get_logger(__name__)

PARKED = "parked"
"""Key in a trial's last-but-one rung-end record: SEER parked the trial at the last rung's
door, to be re-run if it ranks among the finalists once the rung's values are all in."""


def rerun_of(trial: FrozenTrial | optuna.Trial) -> int | None:
    """The number of the parked trial whose configuration ``trial`` trains again, or ``None``.

    Example:
        >>> def objective(trial):  # doctest: +SKIP
        ...     earlier = rerun_of(trial)
        ...     ckpt = f"ckpt/{trial.number if earlier is None else earlier}.pt"
    """
    attrs = (
        trial.system_attrs
        if isinstance(trial, FrozenTrial)
        else trial.storage.get_trial_system_attrs(trial_id_of(trial))
    )
    value = attrs.get(TRIAL_RERUN_OF)
    return None if value is None else int(value)


def is_rerun(trial: FrozenTrial) -> bool:
    return trial.system_attrs.get(TRIAL_RERUN_OF) is not None


def configurations(plan: Plan, trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The plan's configurations among ``trials``: the first ``plan.n_configs`` placed trials
    (not failed, not refused) that are not re-runs, by number. Trials asked beyond them (being
    refused, or waiting to be a re-run) are not configurations."""
    placed = [
        t
        for t in trials
        if t.state != TrialState.FAIL
        and not t.system_attrs.get(TRIAL_BEYOND_PLAN)
        and not t.system_attrs.get(TRIAL_AWAITING_RERUN)
        and not is_rerun(t)
    ]
    placed.sort(key=lambda t: t.number)
    return placed[: plan.n_configs]


def pending_arrivals(
    plan: Plan, trials: list[FrozenTrial], number: int | None, *, closed: bool = False
) -> int:
    """How many values may still arrive at the last rung's door: configurations running (not
    stopped, not trial ``number``) without one, and places not taken yet (none once a trial
    was refused, or ``closed``)."""
    if len(plan.rungs) < 2:
        return 0
    door = plan.rungs[-2].index
    configs = configurations(plan, trials)
    running = sum(
        1
        for t in configs
        if t.number != number
        and not t.state.is_finished()
        and not stopped(t)
        and counted_rank(t.system_attrs, door) is None
    )
    if closed or budget_closed(plan, trials):
        return running  # a trial was refused (width or budget): no more places
    return running + plan.n_configs - len(configs)


def budget_closed(plan: Plan, trials: list[FrozenTrial]) -> bool:
    """Whether no new configuration will start: a trial was refused (width or budget), or a
    trial asked within the plan's width re-runs a parked configuration because the budget
    paid for no new one (its place is taken, by a re-run; counting it as a place still open
    kept every later trial waiting for it until the deadline)."""
    if any(t.system_attrs.get(TRIAL_BEYOND_PLAN) for t in trials):
        return True
    within = set(sorted(t.number for t in trials if placed(t))[: plan.n_configs])
    return any(is_rerun(t) and t.number in within for t in trials)


def _cost_from(plan: Plan, scale: float, done: int) -> tuple[float, float]:
    """``(seconds, GPU-seconds)`` from ``done`` epochs to the last one, at ``scale`` times the
    plan's epoch times, with the plan's start-up for each launch not begun yet."""
    seconds, gpu_seconds, before = 0.0, 0.0, 0
    starts = plan.launch_starts
    for rung in plan.rungs:
        part = max(rung.resource - max(before, done), 0) * rung.epoch_seconds * scale
        if rung.index in starts and before >= done:
            part += rung.startup_s
        seconds += part
        gpu_seconds += part * rung.gpus_per_trial
        before = rung.resource
    return seconds, gpu_seconds


def rerun_cost(plan: Plan, scale: float) -> tuple[float, float]:
    """``(seconds, GPU-seconds)`` a configuration trained from its first epoch needs for every
    rung, at ``scale`` times the plan's epoch times."""
    return _cost_from(plan, scale, 0)


def _running_rerun(trial: FrozenTrial) -> bool:
    return is_rerun(trial) and not trial.state.is_finished() and not stopped(trial)


def reruns_left(plan: Plan, trials: list[FrozenTrial], scale: float, number: int) -> float:
    """GPU-seconds the running re-runs (not trial ``number``) still need to their last epoch."""
    return sum(
        _cost_from(plan, scale, t.last_step or 0)[1]
        for t in trials
        if t.number != number and _running_rerun(t)
    )


def free_seats(plan: Plan, trials: list[FrozenTrial], maximize: bool, number: int | None) -> int:
    """Places in the last rung that no trial holds, trains for, or re-runs (not ``number``)."""
    seats = set(seat_holders(plan, trials, maximize))
    seats |= {t.number for t in trials if _running_rerun(t)}
    seats.discard(number)
    return max(plan.rungs[-1].n_trials - len(seats), 0)


def _left(view: SpendView, number: int) -> float:
    """GPU-seconds of the budget not spent nor committed to trials other than ``number``."""
    ahead = sum(c.gpu_seconds for c in view.commitments if c.number != number)
    return view.budget - view.spent - ahead


def with_reserve(
    plan: Plan, trials: list[FrozenTrial], maximize: bool, view: SpendView, number: int
) -> tuple[SpendView, float]:
    """``view`` with the last rung's reserve counted as spent, and the reserve: what the
    running re-runs still need, and one whole training per parked trial that ranks, as of
    now, among the last rung's width (no more than its free seats, nor than what is left
    pays after the spend and the commitments of trials other than ``number``). New
    configurations and promotions before the last rung's door must fit without it, so the
    finalists parked there keep the money for their re-runs."""
    if len(plan.rungs) < 2:
        return view, 0.0
    running = reruns_left(plan, trials, view.scale, number)
    left = _left(view, number) - running
    cost = rerun_cost(plan, view.scale)[1]
    affordable = int(max(left, 0.0) / cost * (1 + 1e-9)) if cost > 0 else 0
    due = door_state(plan, trials, maximize, certain=False).due  # ranking there as of now
    kept = running + min(len(due), affordable) * cost
    return dataclasses.replace(view, spent=view.spent + kept), kept


def park_reason(
    plan: Plan,
    trials: list[FrozenTrial],
    at_door: tuple[FrozenTrial, int, float],
    time_left: float,
    view: SpendView,
    maximize: bool,
) -> tuple[str | None, bool]:
    """At the last rung's door, for a plain-path trial that ``better`` values beat there
    (``at_door``: the trial, ``better``, its value; fewer than the last width beat it):
    ``(why it parks, None if it does not; whether its seat is certain)``.
    It parks unless its place is certain, or no re-run could finish in ``time_left`` or be
    paid after the spend, the others' commitments and the parked finalists' re-runs."""
    trial, better, value = at_door
    keep = plan.rungs[-1].n_trials
    pending = pending_arrivals(plan, trials, trial.number)
    if better + pending < keep:
        return None, True
    seconds, gpu_seconds = rerun_cost(plan, view.scale)
    # Its re-run is one of the reserve's (a free seat's): park if it is still paid for.
    need = reruns_left(plan, trials, view.scale, trial.number) + gpu_seconds
    free = free_seats(plan, trials, maximize, trial.number)
    if seconds > time_left or free == 0 or need > _left(view, trial.number) * (1 + 1e-9):
        return None, False
    door = plan.rungs[-2].index
    return (
        f"rung {door}: parked, {better} values beat {value:.6g} and {pending} may still "
        f"arrive; re-run if it ranks in the top {keep} once they have"
    ), False


@dataclass(frozen=True)
class DoorState:
    """The last rung's door, as the sampler reads it before placing a trial beyond the width."""

    due: tuple[FrozenTrial, ...]
    """Parked trials to re-run now, best first, no more than the free seats."""
    waiting: bool
    """Whether more may become due: values may still arrive at the door and seats are free."""


def door_state(
    plan: Plan,
    trials: list[FrozenTrial],
    maximize: bool,
    *,
    certain: bool = True,
    closed: bool = False,
) -> DoorState:
    """Which parked trials rank, for certain, among the last width at the door, and have no
    re-run yet; and whether more may (``certain=False``: those that rank there as of now;
    ``closed``: no new configuration will start)."""
    if len(plan.rungs) < 2:
        return DoorState((), False)
    door = plan.rungs[-2].index
    keep = plan.rungs[-1].n_trials
    values = [
        v
        for t in trials
        if t.state != TrialState.FAIL and (v := counted_rank(t.system_attrs, door)) is not None
    ]
    pending = pending_arrivals(plan, trials, None, closed=closed)
    targets = {rerun_of(t) for t in trials if is_rerun(t) and t.state != TrialState.FAIL}
    parked = []
    for t in trials:
        record = t.system_attrs.get(rung_end_key(door))
        if record is None or not record.get(PARKED) or t.number in targets:
            continue
        own = rung_rank(t.system_attrs, door)
        assert own is not None  # the record is there
        beaten = sum(1 for v in values if (v > own if maximize else v < own))
        if beaten < keep:
            parked.append((beaten, t))
    parked.sort(key=lambda pair: (pair[0], pair[1].number))
    due = tuple(t for beaten, t in parked if beaten + (pending if certain else 0) < keep)
    free = free_seats(plan, trials, maximize, None)
    # Worth waiting for: a parked trial still undecided, or a plain one that may yet park.
    undecided = len(due) < len(parked) or may_park(plan, trials)
    return DoorState(due[:free], pending > 0 and free > len(due) and undecided)


def final_rung_full(plan: Plan, trials: list[FrozenTrial], maximize: bool) -> str | None:
    """Why a trial that just recorded its seat in the last rung must give it back: the
    study's ``trials``, read again, show more seats held than the last rung's width."""
    holders = seat_holders(plan, trials, maximize)
    width = plan.rungs[-1].n_trials
    if len(holders) <= width:
        return None
    return (
        f"rung {len(plan.rungs) - 1}: full, {len(holders)} trials took one of its {width} "
        "places at once"
    )


def may_park(plan: Plan, trials: list[FrozenTrial]) -> bool:
    """Whether a configuration may still be parked at the last rung's door: a plain one (no
    leased workers; a trial that never reports cannot be parked either) is running without
    a value there."""
    if len(plan.rungs) < 2 or not any(t.intermediate_values for t in trials):
        return False
    door = plan.rungs[-2].index
    return any(
        not t.state.is_finished()
        and not stopped(t)
        and TRIAL_LEASE not in t.system_attrs
        and counted_rank(t.system_attrs, door) is None
        for t in configurations(plan, trials)
    )


def finished_plan(plan: Plan, trials: list[FrozenTrial], maximize: bool) -> bool:
    """Whether every place is taken and no re-run is due or may become due, so a study may
    stop before asking a trial it would refuse."""
    if len(configurations(plan, trials)) < plan.n_configs:
        return False
    state = door_state(plan, trials, maximize, closed=True)
    return not (state.due or state.waiting or may_park(plan, trials))


def claim_rerun(
    study: optuna.Study,
    plan: Plan,
    trial: FrozenTrial,
    trials: list[FrozenTrial],
    now: Callable[[], float],
    wall_clock: bool,
    closed: bool = False,
) -> FrozenTrial | None:
    """The parked trial whose configuration ``trial``, asked beyond the plan's width (or its
    budget: ``closed``), trains again, recorded in its system attrs; or ``None``. On the wall
    clock it waits while values may still arrive at the door (others train), up to the
    deadline, marked :data:`~optuna_seer.integration.keys.TRIAL_AWAITING_RERUN` meanwhile (no
    configuration, never charged)."""
    storage = storage_of(study)
    maximize = study.direction == StudyDirection.MAXIMIZE
    poll = min(max(plan.rungs[0].epoch_seconds, 0.1), 2.0)  # reads cost the others time
    waited = False
    while True:
        state = door_state(
            plan, [t for t in trials if t.number != trial.number], maximize, closed=closed
        )
        if state.due:
            target = state.due[0]
            storage.set_trial_system_attr(trial_id_of(trial), TRIAL_RERUN_OF, target.number)
            trials = fresh_trials(storage, study_id_of(study))
            # Of two trials that chose it at once, the lower number re-runs it.
            if not any(
                t.number < trial.number
                and rerun_of(t) == target.number
                and t.state != TrialState.FAIL
                for t in trials
            ):
                _logger.info(
                    "SEER re-runs trial %d's configuration as trial %d: it ranks among the "
                    "last rung's finalists",
                    target.number,
                    trial.number,
                )
                return storage.get_trial(trial_id_of(target))  # with its params
            storage.set_trial_system_attr(trial_id_of(trial), TRIAL_RERUN_OF, None)
            continue
        started = storage.get_study_system_attrs(study_id_of(study)).get(STUDY_STARTED_AT)
        moment = now()
        if not (state.waiting and wall_clock and started is not None) or (
            moment >= float(started) + plan.deadline_s
        ):
            return None  # refused next; a waiter stays unplaced
        if not waited:  # others must not wait for this trial as for a configuration
            storage.set_trial_system_attr(trial_id_of(trial), TRIAL_AWAITING_RERUN, True)
            waited = True
        time.sleep(poll)
        fail_dead_trials(study, moment)
        trials = fresh_trials(storage, study_id_of(study))
