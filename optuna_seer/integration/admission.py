"""Who may start, and who may go on, in an asynchronous SEER study (``study.optimize``).

Three rules, each read from the study's trials so that every thread and process applies the
same one (the arithmetic is :mod:`optuna_seer.planning.spending`):

* **Width** (:func:`width_rank`): the plan starts ``plan.n_configs`` configurations, counted
  by the trials that were placed and did not fail, not by trial numbers, so a rerun after a
  crash still trains the full width. A new trial counts every such trial with a lower number
  (its place is decided before its own); of any two, the later one counts the earlier, so no
  two processes can both take the last place.
* **Budget** (:class:`SpendView`, :func:`over_budget`,
  :func:`~optuna_seer.planning.spending.affordable_width`): what the
  ledger shows spent, plus what the trials ahead are projected to cost to the end of their
  rungs at the measured epoch time, plus the new rung must fit the budget, at every report;
  and a new configuration starts only while the budget pays for that many configurations of
  the plan's shape at the measured slowdown (so later rungs keep their share).
* **Deadline** (:func:`out_of_time`): a trial that, at the epoch time it measured since its
  last rung end, cannot finish its rung before the deadline stops; a finalist on leased
  workers trains its last rung until the deadline and completes with its last value
  (:data:`DEADLINE_LAST_RUNG`).
* **Final rung** (:mod:`optuna_seer.integration.seats`): a trial entering the last rung
  records a seat and goes on only if at most the final rung's width of seats are held; a
  trial displaced by better ones gives its seat back. A plain trial enters only when its
  place is certain, else it is parked and maybe re-run
  (:mod:`optuna_seer.integration.reruns`), so no more than the width train there at all.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
import threading

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_seer._optuna import trial_id_of, trials_not_in
from optuna_seer.integration.keys import (
    TRIAL_BEYOND_PLAN,
    TRIAL_LEASE,
    TRIAL_SEGMENT,
    RungRank,
    counted_rank,
    rung_end_key,
    rung_value,
    stop_reason,
)
from optuna_seer.integration.leases import holds_workers
from optuna_seer.integration.ledger import trial_account, trial_gpu_seconds
from optuna_seer.integration.trial_gpus import ImplicitPlacement, placement_of
from optuna_seer.planning.plan import Plan, Rung, format_seconds
from optuna_seer.planning.spending import (
    Commitment,
    budget_check,
    epoch_time_scale,
    planned_gpu_seconds,
    seconds_to_rung_end,
)

DEADLINE_LAST_RUNG = "deadline, last rung"
"""How the stop reason of a finalist on leased workers (:func:`optuna_seer.rungs`) that the
deadline ends inside the last rung begins: it trained as many of the rung's epochs as the
deadline allowed and completes with its last value (a shorter training of a finalist beats
none), where a trial of an earlier rung, which could not be compared at its rung's end, stops
as soon as it cannot reach it."""


def planned_for(plan: Plan, epochs: int) -> float:
    """GPU-seconds ``plan`` predicts for one trial's first ``epochs`` epochs."""
    rungs = plan.rungs
    return planned_gpu_seconds(
        [r.resource for r in rungs],
        [r.gpus_per_trial for r in rungs],
        [r.epoch_seconds for r in rungs],
        epochs,
    )


def passed_epochs(plan: Plan, trial: FrozenTrial) -> int:
    """Epochs at the end of the last rung ``trial`` has a recorded value for (0 if none)."""
    attrs = trial.system_attrs
    done = 0
    for rung in plan.rungs[:-1]:
        if rung_value(attrs, rung.index) is not None:
            done = rung.resource
    return done


def launch_starts(plan: Plan, trial: FrozenTrial) -> frozenset[int]:
    """The rungs ``trial`` pays a launch's start-up at (:func:`launch_rungs`)."""
    return launch_rungs(plan, leases=TRIAL_LEASE in trial.system_attrs)


def launch_rungs(plan: Plan, *, leases: bool) -> frozenset[int]:
    """The rungs a trial pays a launch's start-up at: on leased workers
    (:func:`optuna_seer.rungs`, ``leases``) the plan's :attr:`~Plan.launch_starts`, else (one
    process for all its rungs) the first only."""
    return plan.launch_starts if leases else frozenset({0})


def measured(
    plan: Plan, trial: FrozenTrial, implicit: ImplicitPlacement | None
) -> list[tuple[float, float]]:
    """Per rung: ``(GPU-seconds charged, GPU-seconds the plan predicts)`` for the epochs
    ``trial`` trained there that its settled account covers (up to its last rung end while
    it runs, all its epochs once finished). A launch's start-up is charged to the rung it
    delays, and the plan's start-up is predicted there (:func:`launch_starts`), so that
    start-ups as long as planned do not read as slower epochs."""
    per_rung = [(0.0, 0.0)] * len(plan.rungs)
    account = trial_account(trial, implicit)
    if account is None or placement_of(trial, implicit) is None:
        return per_rung
    starts = launch_starts(plan, trial)
    charged_before, epochs_before = 0.0, 0
    ends: list[tuple[float, int]] = []
    for rung in plan.rungs[:-1]:
        record = trial.system_attrs.get(rung_end_key(rung.index))
        if record is not None:
            ends.append((float(record["ledger"][0]), rung.resource))
    if trial.state.is_finished():
        ends.append((account[0], trial.last_step or 0))
    for charged, epochs in ends:
        epochs = max(epochs, epochs_before)
        index = plan.rung_for_step(epochs_before).index
        old_charged, old_planned = per_rung[index]
        spent = max(charged - charged_before, 0.0)
        planned = planned_for(plan, epochs) - planned_for(plan, epochs_before)
        if index in starts and (spent > 0.0 or epochs > epochs_before):
            planned += plan.rungs[index].startup_gpu_seconds
        per_rung[index] = (old_charged + spent, old_planned + planned)
        charged_before, epochs_before = max(charged, charged_before), max(epochs, epochs_before)
    return per_rung


def segment(
    plan: Plan, trial: FrozenTrial, implicit: ImplicitPlacement | None
) -> tuple[float, int] | None:
    """``(since when, from how many epochs)`` ``trial`` trains its current rung: its last rung
    end (the pruner settles its account there) or its placement."""
    account = trial_account(trial, implicit)
    if account is None:
        return None
    return account[1], passed_epochs(plan, trial)


def commitment(
    plan: Plan,
    trial: FrozenTrial,
    now: float,
    implicit: ImplicitPlacement | None,
    scales: Sequence[float],
    step: int | None = None,
    seconds_per_epoch: float | None = None,
    since: tuple[float, int] | None = None,
) -> Commitment | None:
    """What ``trial`` (running, placed, not stopped) will still cost to its rung's end.

    ``scales`` is the slowdown measured over the study per rung (:class:`SpendView`). ``step``
    (default: its last reported one), ``seconds_per_epoch`` (default: the plan's epoch time
    times the rung's slowdown) and ``since`` (when and from how many epochs it trains its rung;
    default: :func:`segment`) may be given for the trial deciding now.
    """
    done = trial.last_step if step is None else step
    done = done or 0
    if done >= plan.max_epochs:
        return None
    start = segment(plan, trial, implicit) if since is None else since
    if start is None:
        return None
    rung = plan.rung_for_step(done)
    rate = (
        rung.epoch_seconds * scales[rung.index] if seconds_per_epoch is None else seconds_per_epoch
    )
    startup = startup_ahead(plan, trial, start[1])
    # Between rungs waiting for leased workers (none held: returned at the rung end, or a
    # queued request). Once granted, the trial's account restarts at the grant (the ledger),
    # so the segment starts there and the launch is projected from it.
    waiting = done == start[1] and TRIAL_LEASE in trial.system_attrs and not holds_workers(trial)
    seconds = seconds_to_rung_end(
        start[0], start[1], done, rung.resource, rate, now, startup, launch_ahead=waiting
    )
    return Commitment(trial.number, rung.index, done, seconds * rung.gpus_per_trial)


def startup_ahead(plan: Plan, trial: FrozenTrial, epochs_at_start: int) -> float:
    """Seconds of start-up the plan puts at the head of ``trial``'s segment that began with
    ``epochs_at_start`` epochs: its rung's start-up where a launch begins there, else 0."""
    rung = plan.rung_for_step(epochs_at_start)
    if plan.epochs_before(rung.index) != epochs_at_start or rung.index not in launch_starts(
        plan, trial
    ):
        return 0.0
    return rung.startup_s


def stopped(trial: FrozenTrial) -> bool:
    """Whether SEER refused or stopped ``trial`` (it may not have been told yet)."""
    return bool(trial.system_attrs.get(TRIAL_BEYOND_PLAN)) or stop_reason(trial) is not None


@dataclass
class FinishedTrials:
    """What the finished trials of a study hold for ranking and for the ledger.

    A finished trial's rung values and cost never change (storages refuse updates to finished
    trials), so each process gathers them once and then reads only the running ones.
    """

    storage: optuna.storages.BaseStorage  # held, so that the id keying this cache is not reused
    promoting_rungs: int
    state: tuple[float, bool] | None = None
    ids: set[int] = field(default_factory=set)
    values: list[list[RungRank]] = field(default_factory=list)
    gpu_seconds: float = 0.0
    measured: list[tuple[float, float]] = field(default_factory=list)  # per rung, see measured()

    def __post_init__(self) -> None:
        self.values = [[] for _ in range(self.promoting_rungs)]
        self.measured = [(0.0, 0.0)] * (self.promoting_rungs + 1)

    def gather(
        self, plan: Plan, trials: list[FrozenTrial], implicit: ImplicitPlacement | None
    ) -> list[FrozenTrial]:
        """Add the newly finished ``trials``; returns those not finished."""
        unfinished = []
        added = False
        for t in trials_not_in(trials, self.ids):
            if not t.state.is_finished():
                unfinished.append(t)
                continue
            self.ids.add(trial_id_of(t))
            attrs = t.system_attrs
            for index, values in enumerate(self.values):
                rank = counted_rank(attrs, index)
                if rank is not None:
                    values.append(rank)
                    added = True
            self.gpu_seconds += trial_gpu_seconds(t, 0.0, implicit)
            self.measured = add_measured(self.measured, measured(plan, t, implicit))
        if added:
            for values in self.values:
                values.sort()
        return unfinished

    def beating(self, index: int, own: RungRank, maximize: bool) -> int:
        """How many finished trials beat ``own`` at rung ``index``."""
        values = self.values[index]
        if maximize:
            return len(values) - bisect.bisect_right(values, own)
        return bisect.bisect_left(values, own)


def rung_scales(plan: Plan, per_rung: list[tuple[float, float]]) -> tuple[float, tuple[float, ...]]:
    """How much slower than planned epochs ran, over all rungs and per rung, from
    :func:`measured` sums. A rung's own measurement counts as much as it covers: it is pooled
    with one planned trial's epochs there at the overall scale, so that a few epochs measured
    in a rung (a finalist stopped soon after its launch's start-up) do not set its scale
    alone, while a rung measured over many trials keeps its own.

    Example:
        >>> from optuna_seer import Budget, Workload, plan_seer
        >>> plan = plan_seer(Budget(deadline="1h", dollars=5, price_per_gpu_hour=3.6),
        ...                  Workload(epoch_seconds=60, scaling="linear", max_epochs=9))
        >>> as_planned = (600.0, 600.0)  # earlier rungs: 10 epochs each, as the plan said
        >>> one_epoch_after_start_up = (90.0, 60.0)  # 30 s start-up, then one 60 s epoch
        >>> _, scales = rung_scales(plan, [as_planned] * 2 + [one_epoch_after_start_up])
        >>> round(scales[-1], 2)  # not 1.5: one planned trial's 6 epochs weigh against it
        1.09
    """
    scale = epoch_time_scale(sum(c for c, _ in per_rung), sum(p for _, p in per_rung))
    starts = plan.launch_starts
    one_trial = [
        (r.resource - plan.epochs_before(r.index)) * r.epoch_seconds * r.gpus_per_trial
        + (r.startup_gpu_seconds if r.index in starts else 0.0)
        for r in plan.rungs
    ]
    scales = tuple(
        epoch_time_scale(c + scale * one, p + one)
        for (c, p), one in zip(per_rung, one_trial, strict=True)
    )
    return scale, scales


def add_measured(
    a: list[tuple[float, float]], b: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Per-rung sums of two :func:`measured` results."""
    return [(x[0] + y[0], x[1] + y[1]) for x, y in zip(a, b, strict=True)]


@dataclass(frozen=True)
class SpendView:
    """The study's spend and the commitments of its trials in play, in GPU-seconds.

    ``scale`` is how much slower than planned the measured epochs ran over all rungs,
    ``scales`` the same per rung (a rung not measured yet takes ``scale``).
    """

    spent: float
    scale: float
    scales: tuple[float, ...]
    commitments: tuple[Commitment, ...]
    budget: float

    def slowdown_text(self) -> str:
        """The measured slowdown in words (``optuna-seer report``, the dashboard's standing)."""
        return (
            f"epochs (and launch start-ups) took {self.scale:.2f}x the plan's time, per rung "
            f"{', '.join(f'{s:.2f}' for s in self.scales)}: what the budget guard projected "
            "the running trials' rungs with"
        )


def spend_view(
    plan: Plan,
    finished: FinishedTrials,
    unfinished: list[FrozenTrial],
    now: float,
    implicit: ImplicitPlacement | None,
) -> SpendView:
    """What is spent by ``now`` and what the running trials committed (``finished`` must have
    gathered the study's trials, ``unfinished`` being the rest)."""
    spent = finished.gpu_seconds
    per_rung = finished.measured
    running = []
    for t in unfinished:
        spent += trial_gpu_seconds(t, now, implicit)
        per_rung = add_measured(per_rung, measured(plan, t, implicit))
        if t.state == TrialState.RUNNING and not stopped(t):
            running.append(t)
    scale, scales = rung_scales(plan, per_rung)
    commitments = []
    for t in running:
        c = commitment(plan, t, now, implicit, scales)
        if c is not None:
            commitments.append(c)
    return SpendView(
        spent=spent,
        scale=scale,
        scales=scales,
        commitments=tuple(commitments),
        budget=plan.budget_dollars / plan.price_per_gpu_second,
    )


def width_rank(trials: list[FrozenTrial], number: int) -> int:
    """The place of trial ``number`` among the configurations SEER starts: 1 + the trials
    before it that were not refused and did not fail (finished, running or waiting)."""
    return 1 + sum(1 for t in trials if t.number < number and placed(t))


def placed(trial: FrozenTrial) -> bool:
    """Whether ``trial`` takes a place in the plan's width: a configuration SEER started (not
    failed, not refused; see :func:`width_rank`)."""
    return trial.state != TrialState.FAIL and not trial.system_attrs.get(TRIAL_BEYOND_PLAN)


@dataclass
class WidthCount:
    """:func:`width_rank` over a study's trials for one process: a finished trial's state
    and refusal never change, so each is judged once, and a trial start judges only the
    trials not finished when it last looked (the counts are the same as ``width_rank``'s).

    Example:
        >>> import optuna
        >>> done = optuna.trial.create_trial(value=1.0)
        >>> done.number = 4
        >>> count = WidthCount(storage=None)
        >>> count.rank([done], 5), count.rank([done], 2)
        (2, 1)
    """

    storage: object  # held, so that the id keying this count is not reused
    lock: threading.Lock = field(default_factory=threading.Lock)
    judged: set[int] = field(default_factory=set)
    placed: list[int] = field(default_factory=list)  # numbers of the finished ones that count

    def rank(self, trials: list[FrozenTrial], number: int) -> int:
        """:func:`width_rank` of trial ``number`` among ``trials`` (the study's, as read)."""
        running = 0
        with self.lock:
            for t in trials_not_in(trials, self.judged):
                if t.state.is_finished():
                    self.judged.add(trial_id_of(t))
                    if placed(t):
                        bisect.insort(self.placed, t.number)
                elif t.number < number and placed(t):
                    running += 1
            return 1 + bisect.bisect_left(self.placed, number) + running


def over_budget(
    plan: Plan,
    trial: FrozenTrial,
    step: int,
    now: float,
    implicit: ImplicitPlacement | None,
    view: SpendView,
    crossed: list[Rung],
) -> str | None:
    """Why ``trial``'s rung no longer fits the budget, or ``None`` if it does.

    Its rung costs the epochs left to the rung's end at the epoch time it measured since
    its last rung end or placement (entering a new rung: that rate, scaled by the plan from
    the rung it measured to the new one); trials ahead of it keep their commitments.
    """
    if step >= plan.max_epochs:
        return None
    start = segment(plan, trial, implicit)
    rate: float | None = None
    if start is not None and step > start[1]:
        elapsed = now - start[0] - startup_ahead(plan, trial, start[1])
        measured_rate = max(elapsed, 0.0) / (step - start[1])
        if crossed:
            # Settled at this rung end: the new rung starts now, at the scaled rate.
            last = plan.rung_for_step(start[1])
            rate = measured_rate / last.epoch_seconds * plan.rung_for_step(step).epoch_seconds
        else:
            rate = measured_rate
    mine = commitment(
        plan,
        trial,
        now,
        implicit,
        view.scales,
        step=step,
        seconds_per_epoch=rate,
        since=(now, step) if crossed else None,
    )
    if mine is None:
        return None
    return budget_refusal(
        plan,
        view,
        mine,
        f", {{ahead}} committed to trials ahead; rung {mine.rung} needs {{own}} more",
    )


def budget_refusal(plan: Plan, view: SpendView, mine: Commitment, shape: str) -> str | None:
    """Why ``mine`` does not fit the budget (``None`` when it does): what is spent, then
    ``shape`` with ``{ahead}`` (dollars committed to the others) and ``{own}`` (its own)."""
    check = budget_check(view.spent, view.budget, view.commitments, mine)
    if check.fits:
        return None
    price = plan.price_per_gpu_second
    return (
        f"budget: ${check.spent * price:,.2f} of ${plan.budget_dollars:,.2f} spent"
        + shape.format(ahead=f"${check.ahead * price:,.2f}", own=f"${check.own * price:,.2f}")
    )


def out_of_time(
    plan: Plan,
    trial: FrozenTrial,
    step: int,
    now: float,
    started_at: float,
    implicit: ImplicitPlacement | None,
) -> str | None:
    """Why ``trial`` cannot finish its rung before the deadline, or ``None`` if it can."""
    if step >= plan.max_epochs or step <= 0:
        return None
    rung = plan.rung_for_step(step)
    # Epoch time measured since the last rung end (the ledger settles there), so launch
    # start-up never counts as training; the plan's estimate until a rung end is timed. A
    # trial that leases its workers is relaunched, and waits, between rungs: it is timed
    # from its first report inside the rung (TRIAL_SEGMENT) instead.
    attrs = trial.system_attrs
    first = attrs.get(TRIAL_SEGMENT)
    passed = [r for r in plan.rungs[:-1] if rung_value(attrs, r.index) is not None]
    account = trial_account(trial, implicit)
    seconds_per_epoch = rung.epoch_seconds
    if TRIAL_LEASE in attrs:
        if first is not None and int(first[0]) == rung.index and step > int(first[2]):
            seconds_per_epoch = max(now - float(first[1]), 0.0) / (step - int(first[2]))
    elif passed and account is not None and step > passed[-1].resource:
        seconds_per_epoch = max(now - account[1], 0.0) / (step - passed[-1].resource)
    needed = (rung.resource - step) * seconds_per_epoch
    left = started_at + plan.deadline_s - now
    if needed <= left:
        return None
    if TRIAL_LEASE in attrs and rung.index == len(plan.rungs) - 1:
        if left >= 1.5 * seconds_per_epoch + 5.0:
            return None  # one more epoch fits, with time to stop and checkpoint after it
        return (
            f"{DEADLINE_LAST_RUNG}: stopped after epoch {step} of {rung.resource} at "
            f"{seconds_per_epoch:.1f} s per epoch, {max(left, 0.0):.0f} s left of "
            f"{format_seconds(plan.deadline_s)}; completes with its value at epoch {step}"
        )
    return (
        f"deadline: rung {rung.index} needs {needed:.0f} s more "
        f"({rung.resource - step} epochs at {seconds_per_epoch:.1f} s), "
        f"{max(left, 0.0):.0f} s left of {format_seconds(plan.deadline_s)}"
    )
