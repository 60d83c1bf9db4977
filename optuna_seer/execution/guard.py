"""The deadline and budget guard of a rung: may a launch start, must running ones stop?

Pure arithmetic on the backend's clock and the study's dollars (no Optuna, no backend):

- :meth:`Guard.stop_reason`: once the deadline is within a grace period, or the dollars spent
  plus what the running launches burn over that grace period (no further than each one's
  predicted end, give or take an epoch) reach the budget, the rung
  stops launching and asks the running trials to stop after their current epoch
  (``"deadline"`` / ``"budget"``);
- :meth:`Guard.past_limit`: once the deadline or the budget is actually reached, the running
  launches are stopped;
- :meth:`Guard.admit`: a launch starts only if the dollars spent, those still committed to
  the running launches and its own predicted cost stay within the budget (exactly the
  budget is allowed).

"Spent" is the larger of the ledger (the worker-seconds launches used) and the bill the
backend reports (:meth:`~optuna_seer.backends.base.Backend.billed_dollars`: a cloud bills
whole nodes, idle GPUs, setup and billing minimums), when a ``billed`` source is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

StopReason = Literal["", "deadline", "budget"]
"""Why a rung stops early: ``""`` (it does not), ``"deadline"`` or ``"budget"``."""


def grace_seconds(epoch_seconds: float, deadline_s: float) -> float:
    """How long before the deadline running trials are asked to stop: two epochs and 5 s,
    at least 10 s, at most a quarter of the deadline.

    Example:
        >>> grace_seconds(1.0, 3600.0), grace_seconds(30.0, 3600.0), grace_seconds(30.0, 100.0)
        (10.0, 65.0, 25.0)
    """
    return min(max(2.0 * epoch_seconds + 5.0, 10.0), 0.25 * deadline_s)


def spent_dollars(
    worker_seconds: float, price_per_gpu_second: float, billed: Callable[[], float | None] | None
) -> float:
    """Dollars spent: the worker-seconds the launches used, or the backend's bill where that
    is larger. Survivors waiting between launches hold no workers, so their wait is not in
    it (the study's ledger projects a running trial's charge up to now, wait included).

    Example:
        >>> spent_dollars(100.0, 0.01, None), spent_dollars(100.0, 0.01, lambda: 2.5)
        (1.0, 2.5)
    """
    ledger = worker_seconds * price_per_gpu_second
    bill = billed() if billed is not None else None
    return ledger if bill is None else max(ledger, bill)


def predicted_launch_seconds(
    startup_s: float, epoch_s: float, target_epochs: int, done_epochs: int
) -> float:
    """Start-up plus the epochs from a trial's resume point to the rung's end.

    Example:
        >>> predicted_launch_seconds(20.0, 3.0, 9, 3), predicted_launch_seconds(20.0, 3.0, 3, 9)
        (38.0, 20.0)
    """
    return startup_s + max(target_epochs - done_epochs, 0) * epoch_s


@dataclass(frozen=True)
class Running:
    """A launch in flight: when it started (backend clock), on how many workers, and the
    dollars it was predicted to cost when it was admitted."""

    started_at: float
    workers: int
    predicted_dollars: float = 0.0


@dataclass(frozen=True)
class Admission:
    """Whether a launch may start, and the dollars that decision counted."""

    admitted: bool
    spent: float
    committed: float
    cost: float


@dataclass(frozen=True)
class Guard:
    """The limits one rung runs under.

    Attributes:
        deadline_at: The deadline on the backend's clock.
        budget_dollars: The study's budget.
        price_per_gpu_second: Dollars per worker-second.
        grace_s: Seconds before the deadline at which running trials are asked to stop
            (see :func:`grace_seconds`).
        billed: The dollars the provider bills so far (e.g. ``backend.billed_dollars``),
            ``None`` when the ledger is the bill; :meth:`spent` counts the larger.

    Example:
        >>> guard = Guard(deadline_at=100.0, budget_dollars=10.0, price_per_gpu_second=0.1,
        ...               grace_s=10.0)
        >>> guard.stop_reason(89.0, spent=0.0, running=[])
        ''
        >>> guard.stop_reason(90.0, spent=0.0, running=[])
        'deadline'
        >>> guard.admit(0.0, spent=6.0, running=[], cost=4.0).admitted
        True
        >>> billed = Guard(100.0, 10.0, 0.1, 10.0, billed=lambda: 7.5)
        >>> billed.spent(0.0, charged_gpu_s=50.0, running=[])  # the bill is larger
        7.5
    """

    deadline_at: float
    budget_dollars: float
    price_per_gpu_second: float
    grace_s: float
    billed: Callable[[], float | None] | None = None

    def __post_init__(self) -> None:
        for name in ("budget_dollars", "price_per_gpu_second", "grace_s"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name}={value!r} must be a number >= 0.")

    def spent(self, now: float, charged_gpu_s: float, running: Sequence[Running]) -> float:
        """Dollars spent by ``now``: the worker-seconds charged so far plus those of the
        launches in flight, or the backend's bill where that is larger."""
        in_flight = sum((now - r.started_at) * r.workers for r in running)
        return spent_dollars(charged_gpu_s + in_flight, self.price_per_gpu_second, self.billed)

    def stop_reason(self, now: float, spent: float, running: Sequence[Running]) -> StopReason:
        """``"deadline"`` once ``now`` is within the grace period of the deadline, else
        ``"budget"`` once ``spent`` plus what ``running`` burns over the grace period (each
        launch until its predicted end, see :meth:`_burn_seconds`) reaches the budget, else
        ``""``."""
        if now >= self.deadline_at - self.grace_s:
            return "deadline"
        burn = sum(r.workers * self._burn_seconds(now, r) for r in running)
        if spent + burn * self.price_per_gpu_second >= self.budget_dollars:
            return "budget"
        return ""

    def _burn_seconds(self, now: float, launch: Running) -> float:
        """How long ``launch`` may still hold its workers within the grace period: until its
        predicted end, at least half the grace (about an epoch: it may run late), at most the
        grace; the whole grace when its cost was not predicted."""
        if min(launch.predicted_dollars, launch.workers, self.price_per_gpu_second) <= 0:
            return self.grace_s
        left = launch.predicted_dollars / (launch.workers * self.price_per_gpu_second)
        left -= now - launch.started_at
        return min(self.grace_s, max(left, 0.5 * self.grace_s))

    def past_limit(self, reason: StopReason, now: float, spent: float) -> bool:
        """Whether the limit behind ``reason`` is reached: the deadline (for ``"deadline"``)
        or the budget (otherwise); running launches are then stopped."""
        if reason == "deadline":
            return now >= self.deadline_at
        return spent >= self.budget_dollars

    def committed(self, now: float, running: Sequence[Running]) -> float:
        """Dollars the running launches are still predicted to cost after ``now``."""
        return sum(
            max(
                r.predicted_dollars - (now - r.started_at) * r.workers * self.price_per_gpu_second,
                0.0,
            )
            for r in running
        )

    def admit(self, now: float, spent: float, running: Sequence[Running], cost: float) -> Admission:
        """Whether a launch predicted to cost ``cost`` dollars may start at ``now``: only if
        ``spent`` plus the dollars committed to ``running`` plus ``cost`` stay within the
        budget."""
        committed = self.committed(now, running)
        admitted = not (spent + committed + cost > self.budget_dollars)
        return Admission(admitted=admitted, spent=spent, committed=committed, cost=cost)
