"""What the trials in play will still cost, and whether one more rung of a trial fits the budget.

Pure arithmetic for the asynchronous loop (``study.optimize``): every trial in play has a
:class:`Commitment`, the GPU-seconds it is projected to cost until the end of the rung it
trains in, at its measured epoch time. A trial may start or go on with a rung only if what
is spent, plus what the trials ahead of it have committed, plus its own commitment fits the
budget (:func:`budget_check`). Trials ahead are those deeper in the plan (a later rung, then
more epochs trained, then the lower trial number), so a promoted trial keeps its place and a
new one starts only with what is left; every process computes the same order from the
study's storage.

Example:
    >>> a = Commitment(number=0, rung=1, epochs=2, gpu_seconds=30.0)
    >>> b = Commitment(number=1, rung=0, epochs=0, gpu_seconds=20.0)
    >>> check = budget_check(spent=60.0, budget=100.0, commitments=[a, b], mine=b)
    >>> check.ahead, check.fits
    (30.0, False)
    >>> budget_check(spent=60.0, budget=100.0, commitments=[a, b], mine=a).fits
    True
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from optuna_seer.planning.plan import Plan


@dataclass(frozen=True)
class Commitment:
    """What one trial in play is projected to cost until the end of its current rung.

    Attributes:
        number: The trial's number.
        rung: The rung it trains in.
        epochs: Epochs it has trained.
        gpu_seconds: Projected GPU-seconds from now to the end of the rung.
    """

    number: int
    rung: int
    epochs: int
    gpu_seconds: float

    @property
    def priority(self) -> tuple[int, int, int]:
        """Sorts first for the trial that keeps its claim on the budget longest."""
        return (-self.rung, -self.epochs, self.number)


@dataclass(frozen=True)
class BudgetCheck:
    """One trial's claim against the budget, in GPU-seconds."""

    spent: float
    ahead: float
    own: float
    budget: float

    @property
    def fits(self) -> bool:
        # A relative tolerance, so that a plan that spends its budget exactly still fits.
        return self.spent + self.ahead + self.own <= self.budget * (1 + 1e-9)


def budget_check(
    spent: float, budget: float, commitments: Iterable[Commitment], mine: Commitment
) -> BudgetCheck:
    """Whether ``mine`` fits after what is ``spent`` and what trials ahead of it committed.

    ``commitments`` may include ``mine`` (it is not counted twice).
    """
    ahead = sum(
        c.gpu_seconds for c in commitments if c.number != mine.number and c.priority < mine.priority
    )
    return BudgetCheck(spent=spent, ahead=ahead, own=mine.gpu_seconds, budget=budget)


def seconds_to_rung_end(
    segment_start: float,
    epochs_at_start: int,
    epochs_done: int,
    rung_end: int,
    seconds_per_epoch: float,
    now: float,
    startup_s: float = 0.0,
    *,
    launch_ahead: bool = False,
) -> float:
    """Seconds a trial needs from ``now`` to reach ``rung_end`` epochs.

    It started its current segment (its placement, or its last rung end) at
    ``segment_start`` with ``epochs_at_start`` epochs and has ``epochs_done`` now. At
    ``seconds_per_epoch``, after ``startup_s`` of start-up at the segment's head (a launch
    beginning there), it reaches the rung end at ``segment_start + startup_s + (rung_end -
    epochs_at_start) * seconds_per_epoch``; an epoch taking longer than that still leaves the
    epochs it has not started. With ``launch_ahead`` (a trial between rungs still waiting for
    its workers) its launch and every epoch of the rung are still ahead, however long the
    segment has lasted.

    Example:
        >>> seconds_to_rung_end(100.0, 0, 1, 3, 10.0, now=115.0)  # 5 s into its 2nd epoch
        15.0
        >>> seconds_to_rung_end(100.0, 0, 0, 3, 10.0, now=100.0, startup_s=30.0)  # launching
        60.0
        >>> seconds_to_rung_end(100.0, 0, 0, 3, 10.0, now=500.0, startup_s=30.0)  # late
        20.0
        >>> seconds_to_rung_end(100.0, 0, 0, 3, 10.0, 500.0, 30.0, launch_ahead=True)  # waiting
        60.0
    """
    if epochs_done >= rung_end:
        return 0.0
    on_schedule = segment_start + startup_s + (rung_end - epochs_at_start) * seconds_per_epoch - now
    unstarted = (rung_end - epochs_done - 1) * seconds_per_epoch
    if launch_ahead:
        unstarted = startup_s + (rung_end - epochs_done) * seconds_per_epoch
    return max(on_schedule, unstarted, 0.0)


def planned_gpu_seconds(
    ends: Sequence[int], gpus: Sequence[int], epoch_seconds: Sequence[float], epochs: int
) -> float:
    """GPU-seconds a plan with rungs ending at ``ends`` (cumulative epochs), each trial on
    ``gpus`` GPUs at ``epoch_seconds`` per epoch, predicts for a trial's first ``epochs``.

    Example:
        >>> planned_gpu_seconds([1, 3], [1, 2], [10.0, 6.0], epochs=2)
        22.0
    """
    total = 0.0
    before = 0
    for end, workers, seconds in zip(ends, gpus, epoch_seconds):
        total += max(min(epochs, end) - before, 0) * workers * seconds
        before = end
    return total


def epoch_time_scale(charged_gpu_seconds: float, planned: float) -> float:
    """How much slower than planned the trials measured so far ran (1.0 with nothing
    measured): their charged GPU-seconds over what the plan predicts for their epochs.

    Example:
        >>> epoch_time_scale(30.0, 20.0), epoch_time_scale(0.0, 0.0)
        (1.5, 1.0)
    """
    if planned <= 0 or charged_gpu_seconds <= 0:
        return 1.0
    return charged_gpu_seconds / planned


def plan_work(plan: Plan, starts: Collection[int] | None = None) -> float:
    """GPU-seconds of training the plan predicts for all its trials, their launches'
    start-ups included (no idle GPUs): at the rungs in ``starts`` (default: the plan's
    :attr:`~Plan.launch_starts`, a relaunch at every change of workers; ``{0}`` for trials
    that train every rung in the processes they started with).

    Example:
        >>> from optuna_seer import Budget, Workload, plan_seer
        >>> plan = plan_seer(Budget(deadline="1h", dollars=5, price_per_gpu_hour=3.6),
        ...                  Workload(epoch_seconds=60, scaling="linear", max_epochs=9,
        ...                           startup_seconds=30))  # 27 x 1, 9 x 3, 3 x 9 epochs
        >>> sorted(plan.launch_starts), plan_work(plan), plan_work(plan, {0})
        ([0, 2], 4680.0, 4590.0)
    """
    total = 0.0
    before = 0
    starts = plan.launch_starts if starts is None else starts
    for rung in plan.rungs:
        epochs = (rung.resource - before) * rung.gpus_per_trial * rung.epoch_seconds
        total += rung.n_trials * (
            epochs + (rung.startup_gpu_seconds if rung.index in starts else 0)
        )
        before = rung.resource
    return total


def affordable_width(
    plan: Plan, scale: float, *, widen: bool = False, starts: Collection[int] | None = None
) -> int:
    """Configurations of the plan's shape the budget pays for when epochs take ``scale``
    times the plan's time: the plan's width, fewer once ``scale`` outgrows the plan's slack
    (``widen``: more, too, when the plan leaves part of the budget unspent; ``starts``: the
    rungs a trial pays a launch's start-up at, see :func:`plan_work`).

    Example:
        >>> from optuna_seer import Budget, Workload, plan_seer
        >>> plan = plan_seer(Budget(deadline="1h", dollars=5, price_per_gpu_hour=3.6),
        ...                  Workload(epoch_seconds=60, scaling="linear", max_epochs=9))
        >>> affordable_width(plan, 1.0) == plan.n_configs, affordable_width(plan, 1e6)
        (True, 0)
    """
    share = plan_work(plan, starts) * scale / plan.n_configs
    budget = plan.budget_dollars / plan.price_per_gpu_second
    affordable = int(budget / share * (1 + 1e-9))
    return affordable if widen else min(plan.n_configs, affordable)
